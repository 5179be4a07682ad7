"""The one error type of the cloud layer, and its reasons.

Every failure of a request, a page or a collector's call leaves the cloud layer as an ApiError whose
`reason` is one of REASONS: the documented values of `htap_poll_errors_total` and
`htap_collector_errors_total`, exported at 0 from the start so that rate() and alerts work.
"""

from __future__ import annotations

REASONS = ("auth", "throttled", "timeout", "network", "http", "bad_response")


class ApiError(Exception):
    """A failed exchange: reason (for the metric), HTTP status and the API's own error fields."""

    def __init__(self, reason: str, message: str, *, status: int | None = None,
                 error_code: str | None = None, error_msg: str | None = None,
                 retry_after: float | None = None) -> None:
        assert reason in REASONS, reason
        self.reason = reason
        self.message = message
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        self.retry_after = retry_after
        super().__init__(self.describe())

    def describe(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.error_code:
            parts.append(f"error_code={self.error_code}")
        if self.error_msg:
            parts.append(f"error_msg={self.error_msg!r}")
        return " ".join(parts)
