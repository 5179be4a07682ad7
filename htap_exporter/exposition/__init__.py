"""Exposition: the text and OpenMetrics writer, the store of rendered blocks, negotiation, self-metrics."""
