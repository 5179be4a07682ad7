"""htap_exporter/redact.py: every escaped form and every 8-character run of a secret is masked; slots
keep the current and the previous value only."""

from __future__ import annotations

import json
import logging
import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st

from htap_exporter.redact import MASK, Redactor
from tests.examples import examples

PASSWORD = 'Päss"word-\\-0123456789'


def test_escaped_forms_are_masked():
    redactor = Redactor()
    redactor.add(PASSWORD)
    for form in (PASSWORD, json.dumps(PASSWORD)[1:-1], json.dumps(PASSWORD, ensure_ascii=False)[1:-1],
                 repr(PASSWORD)[1:-1], urllib.parse.quote(PASSWORD, safe=""), urllib.parse.quote_plus(PASSWORD),
                 json.dumps(json.dumps(PASSWORD)[1:-1])[1:-1]):
        assert redactor.redact(f"echo: <{form}> end") == f"echo: <{MASK}> end", form


def test_partial_runs_of_eight_or_more_are_masked_and_shorter_ones_are_not():
    redactor = Redactor()
    secret = "MIIabcdefghijklmnopqrstuvwxyz0123456789"
    redactor.add(secret)
    assert redactor.redact(f"got {secret[10:30]}!") == f"got {MASK}!"
    assert redactor.redact(f"got {secret[5:13]} and {secret[20:27]}") == f"got {MASK} and {secret[20:27]}"


def test_short_secrets_are_masked_whole_only():
    redactor = Redactor()
    redactor.add("abc12")  # below the minimum: would mask ordinary words
    redactor.add("abc123x")
    assert redactor.redact("abc12 abc123x abc123") == f"abc12 {MASK} abc123"


def test_a_slot_keeps_the_current_and_the_previous_value():
    redactor = Redactor()
    tokens = [f"MIItoken-{n:04d}-{'x' * 40}" for n in range(100)]
    for token in tokens:
        redactor.remember(("iam_token", "project"), token)
    assert redactor.secret_count == 2
    assert redactor.redact(tokens[-1]) == MASK and redactor.redact(tokens[-2]) == MASK
    assert redactor.redact(tokens[0]) != MASK  # long superseded, forgotten


def test_log_records_are_scrubbed_in_message_fields_and_tracebacks():
    redactor = Redactor()
    redactor.remember("config", PASSWORD)
    try:
        raise RuntimeError(f"server said {json.dumps(PASSWORD)}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (PASSWORD[2:14],),
                                   __import__("sys").exc_info())
    record.error = urllib.parse.quote(PASSWORD)
    redactor.filter(record)
    assert record.getMessage() == f"failed: {MASK}" and record.error == MASK
    assert "word" not in (record.exc_text or "") and MASK in (record.exc_text or "")


@settings(max_examples=examples(200), deadline=None)
@given(secret=st.text(min_size=8, max_size=40).filter(lambda s: len(s.strip()) >= 8),
       prefix=st.text(max_size=20), suffix=st.text(max_size=20), start=st.integers(0, 30))
def test_no_run_of_eight_survives(secret, prefix, suffix, start):
    redactor = Redactor()
    redactor.add(secret)
    for form in (secret, json.dumps(secret)[1:-1], urllib.parse.quote(secret, safe="")):
        piece = form[start:start + 12]
        if len(piece) < 8:
            continue
        cleaned = redactor.redact(prefix + piece + suffix)
        assert not any(form[i:i + 8] in cleaned for i in range(len(form) - 7)), (form, cleaned)
