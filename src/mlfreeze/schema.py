"""Loading TOML tables into frozen dataclasses, with errors that name file and key.

Used by every data file of the project (platform profiles, the models manifest,
``[tool.mlfreeze]``): unknown keys and missing keys are refused on load.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlfreeze.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


class Table:
    """A view of one TOML table that records where it came from.

    ``take(key, type)`` pops a required key, ``opt(key, type, default)`` an optional one;
    ``done()`` refuses whatever is left. Every error names the file and the dotted key.
    """

    def __init__(self, data: Mapping[str, Any], path: Path, where: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: {where or 'top level'} must be a table")
        self._data = dict(data)
        self.path = path
        self.where = where

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: key '{self.key(name)}' {problem}")

    def _check(self, name: str, value: Any, kind: type | tuple[type, ...]) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(name, f"must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise self.error(name, f"must be {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def take(self, name: str, kind: type | tuple[type, ...]) -> Any:
        if name not in self._data:
            raise self.error(name, "is missing")
        return self._check(name, self._data.pop(name), kind)

    def opt(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if name not in self._data:
            return default
        return self._check(name, self._data.pop(name), kind)

    def strings(self, name: str, default: Iterable[str] | None = None) -> tuple[str, ...]:
        value = self.take(name, list) if default is None else self.opt(name, list, list(default))
        for item in value:
            if not isinstance(item, str):
                raise self.error(name, "must be a list of strings")
        return tuple(value)

    def choice(self, name: str, choices: Iterable[str]) -> str:
        value: str = self.take(name, str)
        allowed = tuple(choices)
        if value not in allowed:
            raise self.error(name, f"is {value!r}; allowed: {', '.join(allowed)}")
        return value

    def sub(self, name: str, required: bool = True) -> Table:
        data = self.take(name, dict) if required else self.opt(name, dict, {})
        return Table(data, self.path, self.key(name))

    def rest(self) -> dict[str, Any]:
        """Hand over the remaining keys (for tables keyed by user-chosen names)."""
        data, self._data = self._data, {}
        return data

    def done(self) -> None:
        if self._data:
            name = sorted(self._data)[0]
            raise self.error(name, "is not a known key")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)
