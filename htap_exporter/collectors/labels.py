"""Label values: the one place API values become label values, shared by every collector.

Trimmed, empty or missing -> `unknown`, control characters replaced, long values cut with a hash
so that two long values stay two labels; a fleet-wide cache so that each repeated raw value (users,
databases, states, commands) is cleaned about once, not once per poll.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

UNKNOWN = "unknown"
OTHER = "__other__"
DEFAULT_MAX_LABEL_LENGTH = 128
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
REPLACEMENT = "\ufffd"


def label_value(value: Any, max_length: int = DEFAULT_MAX_LABEL_LENGTH) -> str:
    """The one place API values become label values: trimmed, empty or missing -> `unknown`,
    control characters -> U+FFFD, longer than `max_length` characters cut (see `cut_label`)."""
    if isinstance(value, bool):
        return UNKNOWN
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii():  # JSON can carry lone surrogates (\ud800), which UTF-8 cannot encode
            text = text.encode("utf-8", "replace").decode("utf-8")
        if not text:
            return UNKNOWN
        if not text.isprintable():  # cheap test; the substitution runs only when it is needed
            # A raw CR or NUL breaks parsers of the exposition (prometheus_client's among them) and
            # log lines; line and paragraph separators break line-based tools.
            text = CONTROL_CHARACTERS.sub(REPLACEMENT, text)
        return cut_label(text, max_length) if len(text) > max_length else text
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        text = str(value)
        return cut_label(text, max_length) if len(text) > max_length else text
    return UNKNOWN


def cut_label(text: str, max_length: int) -> str:
    """`max_length` characters: a prefix, `~` and 12 hex digits of a hash of the whole value, so that
    two long values sharing a prefix stay two label values (not summed under one) and the same value
    gets the same label on every poll. Cut on characters, never inside a UTF-8 sequence."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=6).hexdigest()
    return text[:max_length - len(digest) - 1] + "~" + digest


class LabelCache:
    """label_value of short raw strings, remembered across polls and instances: the users, databases,
    states and commands of a fleet repeat, so each is cleaned about once, not once per poll. Bounded
    in entries and in characters (emptied when full), so a server inventing values, or long ones,
    costs at most ~`limit_characters` characters whatever `max_length` is."""

    __slots__ = ("max_length", "limit", "limit_characters", "characters", "labels")

    def __init__(self, max_length: int = DEFAULT_MAX_LABEL_LENGTH, limit: int = 4096,
                 limit_characters: int = 1 << 20) -> None:
        self.max_length = max_length
        self.limit = limit
        self.limit_characters = limit_characters
        self.characters = 0
        self.labels: dict[str, str] = {}

    def clean(self, raw: Any) -> str:
        labels = self.labels
        clean = labels.get(raw) if type(raw) is str else None
        if clean is None:
            clean = label_value(raw, self.max_length)
            if type(raw) is str and len(raw) <= self.max_length:  # a long value is cleaned each time
                if len(labels) >= self.limit or self.characters >= self.limit_characters:
                    labels.clear()
                    self.characters = 0
                labels[raw] = clean
                self.characters += len(raw) + len(clean)
        return clean
