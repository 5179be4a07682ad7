"""Defence in depth for secrets: whatever reaches a log handler is scrubbed of every known secret.

The code never logs a secret on purpose; this catches the accident (a library's message that
echoes a header, a token in an exception text) before it is written anywhere.
"""

from __future__ import annotations

import logging

MASK = "********"
# Shorter values would mask ordinary words and numbers in log lines.
MIN_SECRET_LENGTH = 6


class Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            cleaned = self.redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            for key, value in list(record.__dict__.items()):
                if isinstance(value, str) and key not in ("msg", "name", "levelname", "pathname",
                                                          "filename", "module", "funcName"):
                    setattr(record, key, self.redact(value))
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True
