"""The session-list collector: pages, counting, families."""
