"""Secret values and the small files they (and CA bundles) are read from.

A secret never shows itself in a repr, an error or a log line. Files are read defensively: a
`token_file` pointing at /dev/zero, a FIFO nobody writes to, or a multi-gigabyte file must fail
at once with a clear error, never block the event loop or fill memory (this runs at start and on
every reload, inside the server's loop).
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

MAX_SECRET_FILE_BYTES = 64 * 1024
MAX_CA_FILE_BYTES = 4 * 1024 * 1024  # a full public CA bundle is ~200 KiB


class Secret:
    """A credential value that never shows itself in a repr, str or f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


class SecretError(ValueError):
    """A secret that cannot be read or used; the message never holds the value."""


class FileReadError(SecretError):
    """A file that cannot be read safely; `reason` says why without the path."""

    def __init__(self, path: Path, reason: str, strerror: str | None = None) -> None:
        self.reason = reason if strerror is None else f"cannot read: {strerror}"
        super().__init__(f"{path} {reason}" if strerror is None else f"cannot read {path}: {strerror}")


def read_small_file(path: Path, cap: int) -> bytes:
    """The bytes of a regular file of at most `cap` bytes, or SecretError saying why not.

    stat() first: opening a FIFO would block until a writer appears, and reading /dev/zero never
    ends. The file is then opened non-blocking (in case it was swapped for a FIFO after the stat),
    checked again on the open descriptor, and read up to cap + 1 bytes at most."""
    try:
        info = os.stat(path)
    except OSError as problem:
        raise FileReadError(path, "", problem.strerror or "error") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileReadError(path, f"is not a regular file ({_file_kind(info.st_mode)})")
    if info.st_size > cap:
        raise FileReadError(path, f"is larger than {_size(cap)}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as problem:
        raise FileReadError(path, "", problem.strerror or "error") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileReadError(path, "is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = os.read(fd, cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as problem:
        raise FileReadError(path, "", problem.strerror or "error") from None
    finally:
        os.close(fd)
    if size > cap:
        raise FileReadError(path, f"is larger than {_size(cap)}")
    return b"".join(chunks)


def ca_context(path: Path) -> ssl.SSLContext:
    """A client TLS context that trusts only the CA certificates in `path` (PEM), as a
    Prometheus `tls_config.ca_file` does; hostnames are still verified."""
    data = read_small_file(path, MAX_CA_FILE_BYTES)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise SecretError(f"{path} is not a PEM file") from None
    try:
        return ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError):
        raise SecretError(f"{path} holds no usable PEM CA certificate") from None


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _size(cap: int) -> str:
    return f"{cap // 1024} KiB" if cap < 1024 * 1024 else f"{cap // (1024 * 1024)} MiB"


def secret_format_problem(kind: str, value: str) -> str | None:
    """Why `value` cannot be a `kind` secret, without quoting it; None if it can.

    Tokens and keys travel in HTTP headers (or a signature), where a space or control character
    would fail every request; a password travels in a JSON body and may hold spaces."""
    if not value:
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "must not contain control characters (a line break?)"
    if kind == "password":
        return None
    if any(c.isspace() for c in value):
        return "must not contain spaces"
    if kind == "access_key" and ("," in value or "=" in value):  # they delimit the Authorization header
        return "must not contain ',' or '='"
    return None


@dataclass(frozen=True)
class SecretSource:
    """A secret given inline or as a file that is re-read when it changes (rotated secrets)."""

    value: Secret | None = None
    file: Path | None = None
    kind: str = field(default="token", compare=False)  # token, password, access_key, secret_key, security_token

    def read(self) -> str:
        """The secret, or SecretError naming the problem (never the value)."""
        if self.value is not None:
            text = self.value.reveal()
            where = ""
        else:
            assert self.file is not None
            where = f"{self.file} "
            try:
                text = read_small_file(self.file, MAX_SECRET_FILE_BYTES).decode("utf-8").strip()
            except UnicodeDecodeError:
                raise SecretError(f"{self.file} is not UTF-8 text") from None
        problem = secret_format_problem(self.kind, text)
        if problem is not None:
            raise SecretError(where + problem)
        return text

    def describe(self) -> str:
        return f"file {self.file}" if self.file is not None else "********"
