"""The strict YAML reader of both configuration files (the exporter's config and the web config).

YAML is parsed refusing a key given twice; every problem becomes a ConfigError naming the file and
the key path in it (`projects[0].auth.secret_key`), never a secret's value. `Reader` walks the parsed
tree with that path; each file's reader adds the value types it knows, with its own wording.
"""

from __future__ import annotations

from typing import Any

import yaml


class ConfigError(Exception):
    """A config problem: `file: path: message`, printed as one line by the CLI."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file = file
        self.path = path
        self.message = message
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + message)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: YAML would keep the last one
    silently, so a second `instances:` would drop the first list without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: construct_mapping itself reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, file: str) -> Any:
    """The YAML document in `text`; ConfigError with the line and column of a syntax error."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        reason = getattr(problem, "problem", None) or "invalid YAML"
        raise ConfigError(file, "", f"{where}{reason}") from None
    except (ValueError, RecursionError) as problem:  # e.g. an integer of 5000 digits, nesting too deep
        raise ConfigError(file, "", f"unreadable YAML: {type(problem).__name__}") from None


def join(path: str, key: str | int) -> str:
    """The key path of `key` (a mapping key, or a list index) below `path`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def type_name(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


class Reader:
    """Walks the parsed YAML with the current key path, so every error can name it."""

    # The wording of a mapping's errors (str.format fields: type, key, key_type, allowed); the web
    # config keeps its own (see web/webconfig.py).
    NOT_A_MAPPING = "must be a mapping, got {type}"
    KEY_NOT_A_STRING = "keys must be strings, got {key!r}"
    UNKNOWN_KEY = "unknown key (allowed: {allowed})"

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(self.file, path, message)

    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        """`value` as a mapping whose keys are all in `allowed`; nothing (None) is an empty one."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, self.NOT_A_MAPPING.format(type=type_name(value)))
        for key in value:
            if not isinstance(key, str):
                raise self.error(path, self.KEY_NOT_A_STRING.format(key=key, key_type=type(key).__name__))
            if key not in allowed:
                raise self.error(join(path, key), self.UNKNOWN_KEY.format(allowed=", ".join(sorted(allowed))))
        return value
