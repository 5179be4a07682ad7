"""SQL fingerprints and digests: no literal of a statement ever survives, the same shape gives the
same digest, and the result is a label (one line, capped)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from htap_exporter.collectors.labels import CONTROL_CHARACTERS
from htap_exporter.collectors import sql_text
from htap_exporter.collectors.sql_text import digest, fingerprint, normalise
from tests.examples import examples

SETTINGS = settings(deadline=None, max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])

# Literal contents: quotes of both kinds, backslashes, comment openers, newlines, unicode.
def without_terminator(text: str) -> str:
    """Comment text that cannot close the comment: removing "*/" once can make another ("**//")."""
    while "*/" in text:
        text = text.replace("*/", "")
    return text


contents = st.text(alphabet=st.sampled_from("'\"\\`#-/*\n\t xyZ9é漢Ω\u2028"), max_size=12)


def _quoted(content: str, quote: str, doubled: bool) -> str:
    escaped = content.replace("\\", "\\\\")
    escaped = escaped.replace(quote, quote * 2 if doubled else "\\" + quote)
    return quote + escaped + quote


@st.composite
def string_literals(draw) -> str:
    quote = draw(st.sampled_from("'\""))
    body = _quoted(draw(contents), quote, draw(st.booleans()))
    prefix = draw(st.sampled_from(["", "", "N", "n", "_utf8mb4", "_latin1 "])) if quote == "'" else ""
    return prefix + body


numbers = st.one_of(
    st.integers(-10 ** 20, 10 ** 20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr).filter(lambda text: "e" not in text or "." in text),
    st.integers(0, 99999).map(lambda number: f".{number}"),
    st.tuples(st.integers(0, 999), st.integers(-30, 30)).map(lambda pair: f"{pair[0]}.5e{pair[1]}"),
)
hex_literals = st.one_of(
    st.binary(min_size=1, max_size=6).map(lambda data: "0x" + data.hex().upper()),
    st.binary(max_size=6).map(lambda data: f"X'{data.hex()}'"),
    st.binary(max_size=6).map(lambda data: f"x'{data.hex()}'"),
)
bit_literals = st.one_of(
    st.text(alphabet="01", min_size=1, max_size=16).map(lambda bits: "0b" + bits),
    st.text(alphabet="01", max_size=16).map(lambda bits: f"b'{bits}'"),
    st.text(alphabet="01", max_size=16).map(lambda bits: f"B'{bits}'"),
)
literals = st.one_of(string_literals(), numbers, hex_literals, bit_literals)
spaces = st.text(alphabet=" \t\n\r", min_size=1, max_size=3)
comments = st.one_of(
    contents.map(lambda text: "/* " + without_terminator(text) + " */"),
    contents.map(lambda text: "/*! 40101 " + without_terminator(text) + " */"),
    contents.map(lambda text: "/*+ " + without_terminator(text) + " */"),
    contents.map(lambda text: "-- " + text.replace("\n", "").replace("\r", "") + "\n"),
    contents.map(lambda text: "#" + text.replace("\n", "").replace("\r", "") + "\n"),
)

# Statement shapes: `{}` is a literal, `{in}` an IN list of 1..n literals, ` ` any whitespace or a
# comment between tokens.
SHAPES = [
    "SELECT a , b FROM t WHERE x = {} AND y > {}",
    "select * from orders where status in {in} and total >= {} order by total desc limit {}",
    "UPDATE t SET a = {} , b = {} WHERE id = {}",
    "INSERT INTO t ( a , b , c ) VALUES ( {} , {} , {} )",
    "SELECT count ( * ) , max ( v ) FROM db . t WHERE k NOT IN {in} OR f ( {} , {} ) = {}",
    "DELETE FROM t WHERE a BETWEEN {} AND {} AND b LIKE {}",
    "SELECT {} , {} , {}",
]


@st.composite
def statements(draw, shapes: st.SearchStrategy[str] = st.sampled_from(SHAPES)) -> tuple[str, str, list[str]]:
    """A statement of one of `shapes` with random literals, the same with `?` in their place, and its
    literals."""
    shape = draw(shapes)
    filled: list[str] = []
    skeleton: list[str] = []
    used: list[str] = []
    for word in shape.split(" "):
        if word == "{}":
            literal = draw(literals)
            used.append(literal)
            filled.append(literal)
            skeleton.append("?")
        elif word == "{in}":
            items = draw(st.lists(literals, min_size=1, max_size=5))
            used.extend(items)
            filled.append("(" + ",".join(items) + ")")
            skeleton.append("(?)")
        else:
            filled.append(word)
            skeleton.append(word)
    glue = [draw(st.one_of(spaces, comments.map(lambda c: " " + c + " "))) for _ in filled]
    text = "".join(part + space for part, space in zip(filled, glue))
    return text, " ".join(skeleton), used


def _content(literal: str) -> str:
    """What a literal carries beyond its syntax: the part that must not leak."""
    text = re.sub(r"^(?:[nNxXbB]|_\w+ ?)?['\"]|['\"]$", "", literal)
    return re.sub(r"^(?:0[xXbB]|-|\.)", "", text)


@SETTINGS
@given(statement=statements())
def test_no_literal_survives_and_the_shape_decides_the_fingerprint(statement):
    text, skeleton, used = statement
    result = normalise(text)
    assert result == normalise(skeleton)
    assert not re.search(r"[0-9é漢Ω'\"\\\n]", result)
    for literal in used:
        content = _content(literal)
        if len(content) >= 3:
            assert content not in result


@SETTINGS
@given(shape=st.sampled_from(SHAPES), data=st.data())
def test_statements_differing_only_in_literals_and_list_lengths_share_a_digest(shape, data):
    # Two statements of one shape: their literals, IN lists' lengths, whitespace and comments drawn
    # apart (drawn as any shape and filtered, six draws in seven were thrown away).
    text, _, _ = data.draw(statements(st.just(shape)))
    again, _, _ = data.draw(statements(st.just(shape)))
    assert digest(normalise(text)) == digest(normalise(again))
    assert re.fullmatch(r"[0-9a-f]{16}", digest(normalise(text)))


prefixes = st.sampled_from(["SELECT a FROM t WHERE x = ", "select * from t where a in (1, 'b', ", "UPDATE t SET a = ",
                            "SELECT f(1.5, x'0A') , ", "INSERT INTO t VALUES ("])


@SETTINGS
@given(prefix=prefixes, opener=st.sampled_from(["'", '"', "N'", "X'", "b'", "_utf8mb4'", "/*", "/*!", "`"]),
       secret=st.text(min_size=1, max_size=30))
def test_an_unterminated_string_comment_or_name_leaks_nothing_after_it(prefix, opener, secret):
    # What would end the opener: a comment (either kind) ends at */, a string or name at its quote.
    quote = "*" if opener.startswith("/*") else opener[-1]
    if quote != "*":
        secret = secret.replace(quote, "")
    while "*/" in secret:  # "**//" holds one again once the inner one is gone
        secret = secret.replace("*/", "")
    assume(secret.strip())
    text = prefix + opener + secret
    result = normalise(text)
    expected = normalise(prefix + "?") if quote in "'\"" else normalise(prefix)
    assert result == expected
    assert not re.search(r"[0-9]", result)


# The start of a literal that a cut leaves at the end of a statement, at the start of a word or after
# an opening parenthesis: a charset introducer's name (letters and digits: the generated literals'
# contents hold no `_`), or a hex or bit literal's `0x`/`0b` with nothing after it.
_CUT_PREFIX = re.compile(r"(?:^|(?<=\())(?:_[A-Za-z0-9]+|0[xXbB](?=[,)]*$))")


@SETTINGS
@given(statement=statements(), cut=st.integers(0, 400))
def test_a_statement_cut_anywhere_leaks_no_literal(statement, cut):
    """The session list may send a statement cut short: whatever is cut, what remains of a
    literal is a `?` or gone."""
    text = statement[0][:cut]
    for result in (normalise(text), sql_text._join(sql_text._scrub(text))):
        # What a cut leaves of `0x1F` or `_utf8mb4'..'` (a charset's name: `_UTF8`, or `f(_UTF8` as the
        # first argument of a call) is no literal's content.
        words = [_CUT_PREFIX.sub("", word) for word in result.split()]
        assert not re.search(r"[0-9é漢Ω'\"\\\n]", " ".join(words))


@SETTINGS
@given(statement=statements())
def test_the_scrubber_alone_leaks_no_literal(statement):
    text, _, used = statement
    result = sql_text._join(sql_text._fold_in_lists(sql_text._scrub(text)))
    assert not re.search(r"[0-9é漢Ω'\"\\\n]", result)


def test_a_tokenizer_failure_falls_back_to_the_scrubber_never_to_the_text(monkeypatch):
    class Broken:
        def tokenize(self, text):
            raise RuntimeError("tokenizer bug")

    monkeypatch.setattr(sql_text, "_TOKENIZER", Broken())
    result = normalise("select secret_col from t where password = 'hunter2' and pin = 1234 -- note")
    assert result == "SELECT secret_col FROM t WHERE password = ? AND pin = ?"


@SETTINGS
@given(sql=st.text(max_size=400), max_length=st.integers(20, 300))
def test_any_text_gives_one_capped_line(sql, max_length):
    result = fingerprint(sql, max_length)
    assert 0 < len(result) <= max_length
    assert result == result.strip() and not CONTROL_CHARACTERS.search(result)


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT * FROM t WHERE a = 'it''s' AND b = \"x\\\"y\" -- c\n AND c = 1.5e3 # h\n /* b */ "
     "/*! 40101 SET x=1 */ AND d IN (1,2,3) and e = 0x1F and f = X'1F' and g = b'01' and h = 0b01",
     "SELECT * FROM t WHERE a = ? AND b = ? AND c = ? AND d IN (?+) AND e = ? AND f = ? AND g = ? AND h = ?"),
    ("select /*+ MAX_EXECUTION_TIME(1000) */ count(*) from t where id in (?, ?)",
     "SELECT count(*) FROM t WHERE id IN (?+)"),
    ("select -5, .5, a-1, f(-2), `odd``name` from db.t1", "SELECT ?, ?, a - ?, f(?), `odd``name` FROM db.t1"),
    ("insert into t (a, b) values (1, 'x'), (2, _utf8mb4'y')", "INSERT INTO t(a, b) VALUES (?, ?), (?, ?)"),
    ("select 1--2", "SELECT ? - ?"),  # `--` without a space after it is no comment in MySQL
    ("select 'a' 'b'", "SELECT ?"),
    ("select a from t where s = 'unterminated", "SELECT a FROM t WHERE s = ?"),
    ("  -- nothing but a comment\n", ""),
])
def test_fingerprints(sql, expected):
    assert normalise(sql) == expected


def test_an_empty_fingerprint_is_unknown_and_long_ones_are_cut_as_labels():
    assert fingerprint("/* only */", 128) == "unknown"
    long = fingerprint("select " + ", ".join(f"c{i}" for i in range(100)) + " from t", 64)
    assert len(long) == 64 and re.search(r"~[0-9a-f]{12}$", long)


def test_digest_is_16_hex_of_sha256():
    assert digest("SELECT ?") == "66cbb3a40d4bbd15"
