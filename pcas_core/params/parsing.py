"""Strict parsing of YAML mappings into typed, frozen dataclasses.

:func:`parse` turns the mapping of one ``params.yaml`` section into an instance of its dataclass
(``pcas_core.params``): unknown keys are refused with the key's dotted name and the closest valid
name (so ``dvc exp run -S train_visual.epoch=3`` fails instead of being ignored), values are checked
against the field's type hint, and missing keys take the field's default.

Supported hints: ``bool``, ``int``, ``float`` (an int is accepted and converted), ``str``,
``Literal[...]``, ``Optional[X]`` / ``X | None``, unions of those, ``list[X]``,
``tuple[X, ...]`` / ``tuple[X, Y]``, ``dict[str, X]``, ``Any`` and nested dataclasses. ``bool`` is
never accepted where a number is expected (YAML's ``yes``/``true`` would otherwise become 1).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = ["ConfigError", "parse", "to_dict"]


class ConfigError(ValueError):
    """A params value or key is not what its typed config expects; the message names the key."""


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the hint ``tp`` and return it converted (tuples, floats, dataclasses).

    Raises:
        ConfigError: the value does not fit; the message names ``key``.
    """
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is none of {_type_name(tp)}")
    if origin is Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, key)
    raise TypeError(f"{key}: unsupported type hint {tp!r} in a config dataclass")


def _dotted(where: str, name: str) -> str:
    return f"{where}.{name}" if where else str(name)


def parse(cls: type, mapping: Any, where: str = "") -> Any:
    """Build the frozen dataclass ``cls`` from a YAML mapping, strictly.

    Args:
        cls: a dataclass whose fields carry type hints and defaults (the documented values).
        mapping: the parsed YAML (``None`` is taken as an empty mapping: every default).
        where: dotted name of the mapping, e.g. ``"train_visual"``, for messages (``""`` at the
            root of a file).

    Returns:
        An instance of ``cls``; missing keys take their defaults, and after construction its
        ``__post_init__`` (if any) runs its own range checks.

    Raises:
        ConfigError: ``mapping`` is not a mapping, a key is unknown (the message suggests the
            closest valid key), a value has the wrong type, or a field without default is missing.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping of keys, got {mapping!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in mapping if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f"; did you mean '{_dotted(where, close[0])}'?" if close else f"; valid keys: {names}"
        raise ConfigError(f"unknown params key '{_dotted(where, key)}'{hint}")
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = _dotted(where, f.name)
        if f.name in mapping:
            values[f.name] = _convert(mapping[f.name], hints[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing params key '{key}'")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"{where or 'params'}: {err}") from err


def to_dict(config: Any) -> Any:
    """A config dataclass back to plain YAML-able values (tuples as lists), e.g. for logging."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def flat_keys(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested params mapping as ``{"section.key.subkey": value}`` (leaves only; a non-mapping
    ``tree`` is one leaf named ``prefix``). Used to compare two params trees key by key."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flat_keys(value, f"{prefix}.{key}" if prefix else str(key)))
    return out

