"""The runtime: the scheduler that owns time (spread, back-off, no overlap)."""
