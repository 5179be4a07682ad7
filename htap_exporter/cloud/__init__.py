"""Talking to the cloud: one HTTP exchange, credentials and signing, budgets, the API client."""
