"""Defence in depth for secrets: whatever reaches a log handler is scrubbed of every known secret.

The code never logs a secret on purpose; this catches the accident (a library's message that
echoes a header, a token in an exception text, a server that reflects the request in its error)
before it is written anywhere. A server may echo a secret escaped (JSON: `P\\u00e4ss\\"word`; URL:
`P%C3%A4ss%22word`; Python repr) or only in part, so every escaped form is masked, and so is
any run of PARTIAL or more characters of any form.

Secrets are remembered per slot (a config, a secret file, a project's IAM token), keeping the
current value and the one before it (a token superseded at 80 % of its life is still valid for a
while): token renewals replace values instead of piling them up.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections import deque
from typing import Hashable

MASK = "********"
# Shorter values would mask ordinary words and numbers in log lines.
MIN_SECRET_LENGTH = 6
# Any run of this many characters of a secret (in any of its forms) is masked.
PARTIAL = 8
KEEP_PER_SLOT = 2


def escaped_forms(secret: str) -> set[str]:
    """The ways `secret` can appear in a text: as is, JSON-escaped (ASCII or not), Python-repr'd,
    URL-encoded, and each escape applied twice (a JSON body echoed inside a JSON error, repr'd)."""

    def escapes(text: str) -> set[str]:
        return {
            json.dumps(text)[1:-1],
            json.dumps(text, ensure_ascii=False)[1:-1],
            repr(text)[1:-1],
            urllib.parse.quote(text, safe=""),
            urllib.parse.quote(text),
            urllib.parse.quote_plus(text),
        }

    once = {secret} | escapes(secret)
    return once | {twice for form in once for twice in escapes(form)}


class Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._slots: dict[Hashable, deque[tuple[str, ...]]] = {}
        self._whole: list[str] = []  # forms of secrets too short for partial matching, longest first
        self._grams: frozenset[str] = frozenset()

    def remember(self, slot: Hashable, *secrets: str) -> None:
        """`secrets` are now the values of `slot`; the slot's previous values stay masked too,
        older ones are forgotten."""
        values = tuple(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)
        history = self._slots.setdefault(slot, deque(maxlen=KEEP_PER_SLOT))
        if history and history[-1] == values:
            return
        history.append(values)
        self._rebuild()

    def add(self, secret: str | None) -> None:
        """A secret to mask for the life of the process (it is its own slot)."""
        if secret:
            self.remember(("value", secret), secret)

    @property
    def secret_count(self) -> int:
        return len({s for history in self._slots.values() for values in history for s in values})

    def _rebuild(self) -> None:
        whole: set[str] = set()
        grams: set[str] = set()
        for history in self._slots.values():
            for values in history:
                for secret in values:
                    for form in escaped_forms(secret):
                        if len(form) < PARTIAL:
                            whole.add(form)
                        else:
                            grams.update(form[i:i + PARTIAL] for i in range(len(form) - PARTIAL + 1))
        self._whole = sorted(whole, key=len, reverse=True)
        self._grams = frozenset(grams)

    def redact(self, text: str) -> str:
        for form in self._whole:
            if form in text:
                text = text.replace(form, MASK)
        grams = self._grams
        if not grams or len(text) < PARTIAL:
            return text
        spans: list[list[int]] = []
        for start in range(len(text) - PARTIAL + 1):
            if text[start:start + PARTIAL] in grams:
                end = start + PARTIAL
                if spans and start <= spans[-1][1]:
                    spans[-1][1] = end
                else:
                    spans.append([start, end])
        if not spans:
            return text
        pieces = []
        previous = 0
        for start, end in spans:
            pieces.append(text[previous:start])
            pieces.append(MASK)
            previous = end
        pieces.append(text[previous:])
        return "".join(pieces)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._slots:
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
