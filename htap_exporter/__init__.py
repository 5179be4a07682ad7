"""htap-exporter: Prometheus metrics for the sessions of TaurusDB HTAP instances."""

__version__ = "0.1.0"
