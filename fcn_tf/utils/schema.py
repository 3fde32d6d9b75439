"""Strict mapping of config dictionaries onto dataclasses.

Every section of a config is a dataclass. :func:`parse_section` reads each
field by name, rejects unknown keys (listing the valid ones and the closest
match), checks types, ranges and choices given in the field metadata, and
resolves fields marked ``path`` against the config file's folder.

Field metadata understood here:

- ``choices``: allowed values;
- ``min`` / ``max``: inclusive numeric bounds (of every number in a list,
  nested lists included); ``above`` / ``below``: exclusive bounds;
- ``min_items``: the fewest items a list may hold;
- ``path``: the string (or each string of a list) is a path, resolved against
  ``base_dir``; an empty path is refused (``null`` means none);
- ``keywords``: with ``path``, strings that name a source instead of a file
  (``model.weights: "imagenet"``) and are kept as they are;
- ``help``: one line used in error messages.

NaN and infinity are refused for every key, in any section: Python's JSON
reader accepts ``NaN`` and ``Infinity``, and a non-finite number in a config
only ever fails later, far from its cause. Integers must fit in 64 bits.
"""

import dataclasses
import math
import os
import types
import typing

from fcn_tf.utils.names import closest, unknown_key_message


class ConfigError(ValueError):
    """A config value or key that is not valid; the message names the key."""


def _type_name(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        options = typing.get_args(tp)
        return repr(options[0]) if len(options) == 1 else "one of " + ", ".join(map(repr, options))
    if tp is bool:
        return "true or false"
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "object"
    return getattr(tp, "__name__", str(tp))


INT64 = 2**63


def _check_finite(value, key):
    """Refuse NaN and infinity in ``value`` and, for free-form values, anything inside it."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(
            f"{key}: expected a finite number, received {value}. NaN and Infinity are not "
            "valid config values."
        )
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{key}[{i}]")


def _convert(value, tp, key, base_dir, is_path):
    """Check ``value`` against the annotation ``tp``; return the converted value.

    ``key`` names the value in messages; ``base_dir`` and ``is_path`` resolve
    a path string (:func:`_to_str`). Each kind of annotation has its own step.
    """
    _check_finite(value, key)
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _convert_union(value, tp, key, base_dir, is_path)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, received {value!r}.")
    if origin is typing.Literal:
        return _convert_literal(value, tp, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{key}: expected an object with keys "
                f"{', '.join(f.name for f in dataclasses.fields(tp))}, received {value!r}."
            )
        return parse_section(tp, value, key, base_dir)
    if origin in (list, tuple):
        return _convert_sequence(value, tp, key, base_dir, is_path)
    if tp is dict or origin is dict:
        return _convert_mapping(value, tp, key, base_dir, is_path)
    if tp in _SCALARS:
        return _SCALARS[tp](value, key)
    if tp is str:
        return _to_str(value, key, base_dir, is_path)
    raise TypeError(f"Unsupported config annotation {tp!r} for {key}.")


def _convert_union(value, tp, key, base_dir, is_path):
    """The first member of ``X | Y`` that accepts ``value``; else the clearest error."""
    args = typing.get_args(tp)
    errors = []
    for arg in args:
        try:
            return _convert(value, arg, key, base_dir, is_path)
        except ConfigError as error:
            errors.append(error)
    others = [e for a, e in zip(args, errors) if a is not type(None)]
    if value is not None and len(others) == 1:
        raise others[0]  # "X or null" given a non-null value: X's own message
    raise ConfigError(
        f"{key}: expected {_type_name(tp)}, received {value!r} "
        f"({type(value).__name__})."
    )


def _convert_literal(value, tp, key):
    args = typing.get_args(tp)
    if value in args:
        return value
    guess = closest(value, args) if isinstance(value, str) else None
    hint = f" Did you mean {guess!r}?" if guess is not None else ""
    raise ConfigError(
        f"{key}: expected one of {', '.join(repr(a) for a in args)}, "
        f"received {value!r}.{hint}"
    )


def _convert_sequence(value, tp, key, base_dir, is_path):
    """``list[X]``, ``tuple[X, ...]`` or a fixed ``tuple[X, Y]``, item by item."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"{key}: expected a list ({_type_name(tp)}), received {value!r}."
        )
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(
                f"{key}: expected a list of {len(args)} values, received {value!r}."
            )
        item_types = args
    else:
        item_types = [args[0] if args else typing.Any] * len(value)
    items = [
        _convert(v, a, f"{key}[{i}]", base_dir, is_path)
        for i, (v, a) in enumerate(zip(value, item_types))
    ]
    return tuple(items) if origin is tuple else items


def _convert_mapping(value, tp, key, base_dir, is_path):
    """``dict`` or ``dict[str, X]``: string keys, each value converted."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected an object, received {value!r}.")
    args = typing.get_args(tp)
    value_tp = args[1] if len(args) == 2 else typing.Any
    return {
        str(k): _convert(v, value_tp, f"{key}.{k}", base_dir, is_path)
        for k, v in value.items()
    }


def _to_bool(value, key):
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected true or false, received {value!r}.")


def _to_int(value, key):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, received {value!r}.")
    if not -INT64 <= value < INT64:
        raise ConfigError(f"{key}: {value} is too large for a 64-bit integer.")
    return value


def _to_float(value, key):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{key}: expected a number, received {value!r}.")


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float}


def _to_str(value, key, base_dir, is_path):
    """A string; a path (``is_path``) is non-empty, NUL-free and resolved against ``base_dir``."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, received {value!r}.")
    if is_path and not value.strip():
        raise ConfigError(f"{key}: expected a path, received an empty string. Use null "
                          "for none, or \".\" for the config file's folder.")
    if is_path and "\0" in value:
        raise ConfigError(f"{key}: a path cannot hold a NUL character, received {value!r}.")
    if is_path and base_dir is not None:
        value = os.path.normpath(
            os.path.join(base_dir, os.path.expanduser(value))
        )
    return value


def _check_bounds(value, meta, key):
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        guess = closest(value, meta["choices"]) if isinstance(value, str) else None
        hint = f" Did you mean {guess!r}?" if guess is not None else ""
        raise ConfigError(
            f"{key}: expected one of {', '.join(repr(c) for c in meta['choices'])}, "
            f"received {value!r}.{hint}"
        )
    fewest = meta.get("min_items", 0)
    if isinstance(value, (list, tuple)) and len(value) < fewest:
        raise ConfigError(f"{key}: expected at least {fewest} value{'s' * (fewest != 1)}, "
                          f"received {list(value)!r}.")
    _check_range(value, meta, key, value)


def _check_range(value, meta, key, whole):
    """``min``, ``max``, ``above`` and ``below`` of every number in ``value``, nested lists included."""
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_range(v, meta, f"{key}[{i}]", whole)
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    received = f"received {value!r}" + ("" if value is whole else f" (in {_plain(whole)!r})")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{key}: must be >= {meta['min']}, {received}.")
    if "above" in meta and value <= meta["above"]:
        raise ConfigError(f"{key}: must be > {meta['above']}, {received}.")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{key}: must be <= {meta['max']}, {received}.")
    if "below" in meta and value >= meta["below"]:
        raise ConfigError(f"{key}: must be < {meta['below']}, {received}.")


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def field(default=None, factory=None, help="", **meta):
    """A dataclass field for a config section, with its metadata (see module doc)."""
    meta["help"] = help
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def parse_section(cls, mapping, section, base_dir=None):
    """Build dataclass ``cls`` from ``mapping``, validating every key.

    Args:
        cls: a dataclass type describing the section.
        mapping: the dict read from the config file (``None`` means empty).
        section: the section's dotted name, used in error messages.
        base_dir: folder that relative paths are resolved against.

    Raises:
        ConfigError: for an unknown key, a wrong type or an out-of-range value.
    """
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, dict):
        raise ConfigError(f"'{section}' must be an object, received {mapping!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in mapping:
        if key not in fields:
            raise ConfigError(unknown_key_message(key, f"'{section}'", fields))
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name not in mapping:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise ConfigError(f"Missing required key '{section}.{name}'.")
            continue
        key = f"{section}.{name}"
        meta = field.metadata
        is_path = bool(meta.get("path")) and mapping[name] not in meta.get("keywords", ())
        value = _convert(mapping[name], hints[name], key, base_dir, is_path)
        _check_bounds(value, meta, key)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"'{section}': {error}") from None


def to_dict(obj):
    """Turn a (nested) config dataclass back into plain JSON-able data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
