"""Customer SQL -> a literal-free fingerprint and its digest, for the top sessions' labels.

No literal of a statement may ever reach a label. The statement is cut into tokens by sqlglot's
MySQL tokenizer, which knows MySQL's lexical rules: `'...'` and `"..."` strings with backslash
escapes and doubled quotes, `X'1F'`/`0x1F` hex and `B'01'`/`0b01` bit literals, `N'...'` and
`_charset'...'` strings, backtick identifiers, and the three comment kinds (`-- ` only with the
whitespace MySQL requires after it, `#`, `/* */`; MySQL's `/*! */` and `/*+ */` come back as comments
or a hint token, and are dropped). Tokens are then written back from a whitelist of what may be
written: every literal becomes `?`, comments and hints are dropped, and a token whose source text
holds a quote character becomes `?` too, whatever its type, so that a string the tokenizer might
mistake for something else is still not written.

Malformed SQL never leaks: the session list's statements are often cut short, so an unterminated
string, identifier or comment is common. Then everything from its opening quote on is dropped (a
string becomes one `?`) and the rest is tokenized again. If the tokenizer still refuses the text,
a conservative scrubber (below) writes only words that cannot be literals, punctuation and `?`;
never the raw text.
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterator

from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import SqlglotError
from sqlglot import Token, TokenType

from htap_exporter.collectors.labels import label_value

# Statements are fingerprinted from their first this many characters only: an INSERT of megabytes
# would otherwise cost a second of tokenizing. The label holds ~128 characters anyway; a cut that
# falls inside a literal drops it like any unterminated string.
MAX_INPUT_CHARACTERS = 16384
PLACEHOLDER = "?"
IN_LIST = "(?+)"

_TOKENIZER = MySQL.Tokenizer()
# Each word of the tokenizer's keywords ("ORDER BY" gives ORDER and BY).
_KEYWORDS = frozenset(word for keyword in _TOKENIZER.KEYWORDS for word in keyword.split())
_LITERALS = frozenset({TokenType.STRING, TokenType.NUMBER, TokenType.HEX_STRING, TokenType.BIT_STRING,
                       TokenType.BYTE_STRING, TokenType.NATIONAL_STRING, TokenType.RAW_STRING,
                       TokenType.HEREDOC_STRING, TokenType.UNICODE_STRING, TokenType.NATIONAL_RAW_STRING})
# Hints (`/*+ ... */`) are comments to MySQL; a charset introducer (`_utf8mb4'...'`) is part of its
# string literal.
_DROPPED = frozenset({TokenType.HINT, TokenType.INTRODUCER})
# Written as the source spells them (identifiers are case-sensitive in places); any other token is
# a keyword, an operator or punctuation, written upper case.
_NAMES = frozenset({TokenType.VAR, TokenType.IDENTIFIER})
# After these a `-`, `+` or `.` before a number is the number's sign or point, not an operator.
_VALUE_ENDS = frozenset({TokenType.VAR, TokenType.IDENTIFIER, TokenType.R_PAREN, TokenType.R_BRACKET,
                         TokenType.PLACEHOLDER}) | _LITERALS
_SIGNS = frozenset({TokenType.DASH, TokenType.PLUS, TokenType.DOT})
_QUOTES = ("'", '"')
_NO_SPACE_BEFORE = frozenset({",", ")", ".", ";"})
_NO_SPACE_AFTER = frozenset({"(", ".", "@", "@@"})


class _Unterminated(Exception):
    pass


def normalise(sql: str) -> str:
    """The statement's fingerprint before any cap: literals as `?`, comments dropped, `IN (...)`
    lists of placeholders folded to `IN (?+)`, keywords upper case, one space between tokens
    (none inside `f(`, `a.b`, before `,`). Empty when nothing but comments and space was there."""
    text = sql[:MAX_INPUT_CHARACTERS]
    try:
        words = _written(text, _TOKENIZER.tokenize(text))
    except SqlglotError:
        words = _after_cut(text)
    except Exception:  # the tokenizer is not ours: whatever it raises, the scrubber answers
        words = _scrub(text)
    return _join(_fold_in_lists(words))


def fingerprint(sql: str, max_length: int) -> str:
    """`normalise(sql)` as a label value: one line, capped at `max_length` characters as every label
    (`cut_label`), `unknown` when empty."""
    return label_value(normalise(sql), max_length)


def digest(fingerprint: str) -> str:
    """The first 16 hex digits of the SHA-256 of a fingerprint (its UTF-8 bytes)."""
    return hashlib.sha256(fingerprint.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _written(text: str, tokens: list[Token]) -> list[str]:
    words: list[str] = []
    append = words.append
    previous: TokenType | None = None
    literal_before = False
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        kind = token.token_type
        if kind in _DROPPED:
            continue
        source = text[token.start:token.end + 1]
        # A name that starts with a digit is, in practice, a number cut short or a hex/bit literal the
        # tokenizer did not know (`0x` at the end of a cut statement): a placeholder, never the text.
        if (kind in _LITERALS or "'" in source or '"' in source
                or (kind in _NAMES and source[:1].isdigit())):
            # Adjacent strings are one string in MySQL ('a' 'b'): one placeholder.
            if not literal_before:
                append(PLACEHOLDER)
            literal_before = True
            previous = kind
            continue
        literal_before = False
        if kind in _NAMES:
            # A keyword's words split by a comment (`ORDER /* */ BY`) come back as names.
            append(source.upper() if kind is TokenType.VAR and source.upper() in _KEYWORDS else source)
        elif (kind in _SIGNS and previous not in _VALUE_ENDS and index < last
              and tokens[index + 1].token_type is TokenType.NUMBER and tokens[index + 1].start == token.end + 1):
            continue  # -5, +5 and .5 are literals like 5
        elif source.isalpha():
            append(source.upper())
        else:
            append(" ".join(token.text.upper().split()))
        previous = kind
    return words


def _after_cut(text: str) -> list[str]:
    """Tokens of a statement the tokenizer refused: up to its first unterminated string (then one
    `?`), identifier or comment; the scrubber's words when that does not help."""
    end, was_string = _unterminated_at(text)
    if end is None:
        return _scrub(text)
    try:
        words = _written(text[:end], _TOKENIZER.tokenize(text[:end]))
    except Exception:
        return _scrub(text)
    if was_string and (not words or words[-1] != PLACEHOLDER):
        words.append(PLACEHOLDER)
    return words


def _unterminated_at(text: str) -> tuple[int | None, bool]:
    """Where the first unterminated string, identifier or comment opens (MySQL's rules), and
    whether it is a string; (None, False) when everything is closed."""
    try:
        for _ in _lex(text):
            pass
    except _Unterminated as cut:
        start, kind = cut.args
        if kind == "string" and start > 0 and text[start - 1] in "xXbBnN":
            # X'1F, B'01, N'...: the prefix belongs to the literal
            if start == 1 or not (text[start - 2].isalnum() or text[start - 2] in "_$"):
                start -= 1
        return start, kind == "string"
    return None, False


def _lex(text: str) -> Iterator[tuple[str, int, int]]:
    """A minimal MySQL lexer for what can hide a literal: yields (kind, start, end) for strings,
    backtick identifiers, comments and words; raises _Unterminated(start, kind) at the first one that
    does not close. Anything else is a single character of punctuation or space."""
    length = len(text)
    position = 0
    while position < length:
        char = text[position]
        if char in "'\"`":
            end = _closing(text, position, char)
            if end < 0:
                raise _Unterminated(position, "identifier" if char == "`" else "string")
            yield ("identifier" if char == "`" else "string"), position, end
            position = end
        elif char == "#" or (text.startswith("--", position)
                             and (position + 2 == length or text[position + 2] in " \t\r\n\f\v")):
            end = text.find("\n", position)
            end = length if end < 0 else end + 1
            yield "comment", position, end
            position = end
        elif text.startswith("/*", position):
            end = text.find("*/", position + 2)
            if end < 0:
                raise _Unterminated(position, "comment")
            yield "comment", position, end + 2
            position = end + 2
        elif char.isalnum() or char in "_$":
            end = position + 1
            while end < length and (text[end].isalnum() or text[end] in "_$"):
                end += 1
            if end < length and text[end] == "." and text[position].isdigit():  # 1.5, 1.5e3
                end += 1
                while end < length and (text[end].isalnum() or text[end] in "_$"):
                    end += 1
            yield "word", position, end
            position = end
        else:
            yield "other", position, position + 1
            position += 1


def _closing(text: str, start: int, quote: str) -> int:
    """The index after the closing quote of the quoted text at `start`, or -1. Doubled quotes
    escape; so does a backslash, except in identifiers."""
    position = start + 1
    length = len(text)
    while position < length:
        char = text[position]
        if char == "\\" and quote != "`":
            position += 2
            continue
        if char == quote:
            if position + 1 < length and text[position + 1] == quote:
                position += 2
                continue
            return position + 1
        position += 1
    return -1


_CHARSET_INTRODUCER = re.compile(r"_\w+\Z")


def _is_literal_prefix(word: str, before_quote: str) -> bool:
    """`X'..'`, `B'..'`, `N'..'` (no space allowed) and `_charset '..'` (space allowed)."""
    return (word in ("x", "X", "b", "B", "n", "N") and before_quote == word) or bool(_CHARSET_INTRODUCER.match(word))


def _scrub(text: str) -> list[str]:
    """The last resort: writes only `?`, punctuation and words that start with a letter and are
    not a literal's prefix; strings, numbers and anything after an unterminated string or comment
    are gone. Conservative rather than pretty: its fingerprints may differ from the tokenizer's."""
    words: list[str] = []
    try:
        for kind, start, end in _lex(text):
            if kind == "string":
                if words and _is_literal_prefix(words[-1], text[start - 1:start]):
                    words.pop()  # X'1F', N'..', _utf8mb4 '..': the prefix goes with the literal
                if not words or words[-1] != PLACEHOLDER:
                    words.append(PLACEHOLDER)
            elif kind == "identifier":
                words.append(PLACEHOLDER if any(q in text[start:end] for q in _QUOTES) else text[start:end])
            elif kind == "word":
                word = text[start:end]
                if word[0].isdigit():
                    words.append(PLACEHOLDER)
                else:
                    words.append(word.upper() if word.upper() in _KEYWORDS else word)
            elif kind == "other" and not text[start].isspace():
                words.append(text[start])
    except _Unterminated as cut:
        start, kind = cut.args
        if kind == "string":
            if words and _is_literal_prefix(words[-1], text[start - 1:start]):
                words.pop()
            if not words or words[-1] != PLACEHOLDER:
                words.append(PLACEHOLDER)
    return words


def _fold_in_lists(words: list[str]) -> list[str]:
    """`IN (?, ?, ?)` and `IN (?)` -> `IN (?+)`: a list's length is as much a literal as its values."""
    folded: list[str] = []
    index = 0
    count = len(words)
    while index < count:
        word = words[index]
        folded.append(word)
        index += 1
        if word != "IN" or index >= count or words[index] != "(":
            continue
        end = index + 1
        while end < count and words[end] == PLACEHOLDER:
            if end + 1 < count and words[end + 1] == ",":
                end += 2
            elif end + 1 < count and words[end + 1] == ")":
                folded.append(IN_LIST)
                index = end + 2
                break
            else:
                break
    return folded


def _join(words: list[str]) -> str:
    parts: list[str] = []
    after = True  # no space at the start
    for word in words:
        if not (after or word in _NO_SPACE_BEFORE or (word == "(" and parts and _is_name(parts[-1]))):
            parts.append(" ")
        parts.append(word)
        after = word in _NO_SPACE_AFTER
    return "".join(parts)


def _is_name(word: str) -> bool:
    """A function's or table's name before `(`: `count(`, not `IN (`."""
    return (word[:1] == "`" or word[:1].isalpha() or word[:1] == "_") and word.upper() not in _KEYWORDS
