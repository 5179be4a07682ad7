"""The web server: /metrics, landing page, web config (TLS, basic auth), guards."""
