"""Log output: logfmt or JSON lines with every `extra=` field as its own key, repeats held back.

Call sites put facts in `extra`, not in the message:
`log.warning("poll failed", extra={"instance_id": i, "reason": r, "error": text})` becomes
`... msg="poll failed" instance_id=... reason=... error="..."` in logfmt and the same keys in JSON,
which log processors (Loki, Elasticsearch) index without parsing the message.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import sys
import time
from collections import OrderedDict
from typing import Callable

from htap_exporter.redact import Redactor

# Attributes every LogRecord has; anything else on a record came in through `extra=` and is a field.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_RESERVED_KEYS = ("ts", "level", "logger", "msg")


def log_fields(record: logging.LogRecord) -> list[tuple[str, object]]:
    """ts, level, logger, msg, then every `extra=` field as its own key, then the traceback."""
    fields: list[tuple[str, object]] = [
        ("ts", _timestamp(record)),
        ("level", _level(record)),
        ("logger", record.name),
        ("msg", record.getMessage()),
    ]
    for key, value in record.__dict__.items():
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
            fields.append((f"field_{key}" if key in _RESERVED_KEYS else key, value))
    traceback = record.exc_text
    if record.exc_info:
        traceback = logging.Formatter().formatException(record.exc_info)
    if traceback:
        # "error" is the usual key of a failure's text; a traceback next to one gets its own key.
        fields.append(("traceback" if any(key == "error" for key, _ in fields) else "error", traceback))
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(_text(value))}" for key, value in log_fields(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {key: value if _json_plain(value) else _text(value) for key, value in log_fields(record)}
        return json.dumps(document)


def _json_plain(value: object) -> bool:
    """Numbers, booleans and null stay JSON values; everything else becomes a string."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (int, bool, type(None)))


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname.lower())


def _logfmt_value(value: str) -> str:
    if value and all(c.isalnum() or c in "-._:/@+" for c in value):
        return value
    # JSON string quoting escapes quotes, backslashes and every control character (a server's
    # error text must not be able to forge a log line or a terminal escape).
    return json.dumps(value, ensure_ascii=False)


class RepeatFilter(logging.Filter):
    """Lets one of a run of identical warnings or errors, and `info_burst` of a run of identical
    info lines, through per `window` seconds.

    An attack or a broken resource can make one line repeat thousands of times a second (asyncio
    logs a traceback per failed accept when descriptors run out; anyone who may POST /-/reload
    can make "configuration reloaded" repeat): the log must stay readable and small. Info lines
    get a few repeats, so that an operator's reloads each show up. The next line let through
    after a quiet spell says how many were left out. Debug lines are not held back."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1024, info_burst: int = 5) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        self._info_burst = info_burst
        # key -> [window start, shown in this window, suppressed since the last one shown]
        self._seen: OrderedDict[tuple[object, ...], list[float | int]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return True
        burst = 1 if record.levelno >= logging.WARNING else self._info_burst
        key = (record.name, record.levelno,
               *(str(value) for name, value in log_fields(record) if name != "ts"))
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self._window:
            if entry[1] >= burst:
                entry[2] += 1
                return False
            entry[1] += 1
        else:
            entry = [now, 1, entry[2] if entry is not None else 0]
            self._seen[key] = entry
        if entry[2]:
            record.suppressed = int(entry[2])  # identical lines left out since the last one shown
            entry[2] = 0
        self._seen.move_to_end(key)
        while len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)
        return True


def setup_logging(level: str, fmt: str, redactor: Redactor) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(redactor)  # first: the repeat check must see the masked text
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                   "error": logging.ERROR}[level])
