"""htap_exporter/logs.py: extra fields as keys (logfmt and JSON), repeated lines held back."""

from __future__ import annotations

import json
import logging

from htap_exporter.logs import JsonFormatter, LogfmtFormatter, RepeatFilter


def record(msg: str, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("htap_exporter.runtime.scheduler", level, __file__, 1, msg, (), None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_extra_fields_are_their_own_keys():
    line = record("poll failed", instance_id="abc", reason="auth", error='HTTP 401 "no"', attempt=3)
    document = json.loads(JsonFormatter().format(line))
    assert document["msg"] == "poll failed" and document["instance_id"] == "abc"
    assert document["reason"] == "auth" and document["error"] == 'HTTP 401 "no"' and document["attempt"] == 3
    text = LogfmtFormatter().format(line)
    assert text.endswith(' msg="poll failed" instance_id=abc reason=auth error="HTTP 401 \\"no\\"" attempt=3')


def test_an_extra_field_cannot_overwrite_the_fixed_keys():
    document = json.loads(JsonFormatter().format(record("x", level=logging.INFO, ts="forged", level_=1)))
    assert document["ts"] != "forged" and document["field_ts"] == "forged"


def test_traceback_next_to_an_error_field():
    try:
        raise ValueError("boom")
    except ValueError:
        line = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    line.error = "what went wrong"
    document = json.loads(JsonFormatter().format(line))
    assert document["error"] == "what went wrong" and "ValueError: boom" in document["traceback"]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_identical_warnings_are_held_back_and_counted():
    clock = Clock()
    repeat = RepeatFilter(window=10.0, clock=clock)
    passed = [repeat.filter(record("socket.accept() out of system resource")) for _ in range(1000)]
    assert passed.count(True) == 1
    assert repeat.filter(record("another problem"))  # a different line is not held back
    assert repeat.filter(record("socket.accept() out of system resource", level=logging.DEBUG)) is True
    clock.now = 10.5
    shown = record("socket.accept() out of system resource")
    assert repeat.filter(shown) and shown.suppressed == 999  # type: ignore[attr-defined]
    assert "suppressed=999" in LogfmtFormatter().format(shown)


def test_same_message_with_other_fields_is_not_identical():
    repeat = RepeatFilter(clock=Clock())
    assert repeat.filter(record("poll failed", instance_id="a"))
    assert repeat.filter(record("poll failed", instance_id="b"))
    assert not repeat.filter(record("poll failed", instance_id="a"))


def test_memory_of_lines_is_bounded():
    repeat = RepeatFilter(clock=Clock(), max_keys=100)
    for n in range(10_000):
        repeat.filter(record(f"line {n}"))
    assert len(repeat._seen) == 100


def test_identical_info_lines_pass_a_few_times_per_window():
    clock = Clock()
    repeat = RepeatFilter(window=10.0, clock=clock, info_burst=5)
    passed = [repeat.filter(record("configuration reloaded", level=logging.INFO, instances=3)) for _ in range(500)]
    assert passed.count(True) == 5 and passed[:5] == [True] * 5
    assert repeat.filter(record("configuration reloaded", level=logging.INFO, instances=4))  # other fields
    clock.now = 10.5
    shown = record("configuration reloaded", level=logging.INFO, instances=3)
    assert repeat.filter(shown) and shown.suppressed == 495  # type: ignore[attr-defined]
    again = record("configuration reloaded", level=logging.INFO, instances=3)
    assert repeat.filter(again) and not hasattr(again, "suppressed")
