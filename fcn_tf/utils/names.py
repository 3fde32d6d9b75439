"""Helpers for errors about unknown names ("Did you mean ...?")."""

import difflib


def closest(name, options):
    """Return the option closest to ``name``, or ``None`` if none is close."""
    options = list(options)
    lowered = {str(o).lower().replace("-", "_"): o for o in options}
    key = str(name).lower().replace("-", "_")
    if key in lowered:
        return lowered[key]
    matches = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.6)
    return lowered[matches[0]] if matches else None


def unknown_key_message(key, where, valid, kind="key", plural="keys"):
    """Format "Unknown key 'x' in 'train'. Did you mean 'y'? Valid keys: ...".

    Keys keep the order given unless ``valid`` is a set or dict (then sorted).
    """
    guess = closest(key, valid)
    hint = f" Did you mean {guess!r}?" if guess else ""
    listed = sorted(valid) if isinstance(valid, (set, dict)) else list(valid)
    return f"Unknown {kind} {key!r} in {where}.{hint} Valid {plural}: {', '.join(listed)}."


def unknown_name_message(kind, name, options):
    """Format "Unknown <kind> 'x'. Available: a, b. Did you mean 'a'?"."""
    options = sorted(str(o) for o in options)
    message = f"Unknown {kind} {name!r}. Available: {', '.join(options)}."
    guess = closest(name, options)
    if guess is not None:
        message += f" Did you mean {guess!r}?"
    return message
