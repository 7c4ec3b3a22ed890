"""Frozen dataclass configs: dict/JSON round trip, typed ``a.b=v`` overrides, close-match errors."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from archlab.errors import ArchlabError, UnknownNameError, close_matches_message


class ConfigError(ArchlabError, ValueError):
    """A bad override: wrong type or invalid value."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON-able data (tuples become lists)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Inverse of ``to_dict``: rebuild (nested) dataclass ``cls`` with type coercion."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise UnknownNameError(close_matches_message(f"field of {cls.__name__}", key, names))
        kwargs[key] = coerce(value, hints[key], key)
    return cls(**kwargs)


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=False)


def _parse_scalar(text: str) -> Any:
    """Parse an override value written on the command line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        if "," in text:
            return [_parse_scalar(t.strip()) for t in text.split(",") if t.strip()]
        return text


def coerce(value: Any, tp: Any, key: str = "") -> Any:
    """Coerce ``value`` to annotation ``tp`` or raise ``ConfigError`` naming the expected type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = _parse_scalar(value)
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, key) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return origin(coerce(v, inner, key) for v in value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_dict(tp, value)
        raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected a bool, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an int, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    f = float(value)
                    if f.is_integer():
                        return int(f)
                except ValueError:
                    pass
        raise ConfigError(f"{key}: expected an int, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a float, got {value!r}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        raise ConfigError(f"{key}: expected a finite float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: cannot convert {value!r} to {_type_name(tp)}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def replace_fields(cfg: Any, updates: Mapping[str, Any]) -> Any:
    """A copy of ``cfg`` with dotted fields replaced (``{"enc.d_model": 64}``), values coerced.

    Raises:
        UnknownNameError: a key that is not a field, with the close matches.
        ConfigError: a value of the wrong type, or one rejected by ``__post_init__``.
    """
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    names = [f.name for f in dataclasses.fields(cfg)]
    hints = typing.get_type_hints(type(cfg))
    for key, value in updates.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise UnknownNameError(
                close_matches_message(f"field of {type(cfg).__name__}", head, names)
            )
        if rest:
            sub = getattr(cfg, head)
            if not dataclasses.is_dataclass(sub):
                raise UnknownNameError(
                    f"{head} is a {type(sub).__name__}, it has no field {rest!r}"
                )
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = coerce(value, hints[head], key)
    for head, sub_updates in nested.items():
        direct[head] = replace_fields(getattr(cfg, head), sub_updates)
    try:
        return dataclasses.replace(cfg, **direct)
    except (ValueError, TypeError) as e:
        if isinstance(e, ArchlabError):
            raise
        raise ConfigError(f"{type(cfg).__name__}: {e}") from None


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}`` (values parsed, then coerced later)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=3e-4)")
        out[key.strip()] = _parse_scalar(value.strip())
    return out


def apply_overrides(cfg: Any, items: Iterable[str]) -> Any:
    """Apply CLI-style ``key=value`` overrides to a dataclass config."""
    return replace_fields(cfg, parse_overrides(items))
