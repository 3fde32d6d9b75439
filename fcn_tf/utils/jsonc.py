"""Commented JSON: ``//``, ``#`` and ``/* */`` comments and trailing commas.

No maintained parser on PyPI accepts all three comment styles (``commentjson``
lacks ``/* */`` and warns on import, ``json5`` lacks ``#``), so comments are
removed here by a small scanner that knows about strings and then the text goes
to the standard :mod:`json` module. Comments are replaced by spaces and
newlines are kept, so the line and column in a JSON error still point at the
user's file.
"""

import json
import os


class JSONCError(ValueError):
    """A commented-JSON file that cannot be parsed; the message names the file."""


def strip_comments(text):
    """Return ``text`` with comments blanked out and trailing commas removed."""
    out = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
        elif c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end == -1:
                line = text.count("\n", 0, i) + 1
                raise JSONCError(f"Unterminated /* comment starting on line {line}.")
            block = text[i : end + 2]
            out.append("".join(ch if ch == "\n" else " " for ch in block))
            i = end + 2
        else:
            out.append(c)
            i += 1
    return _drop_trailing_commas("".join(out))


def _drop_trailing_commas(text):
    out = list(text)
    in_string = False
    last_comma = None
    i = 0
    while i < len(out):
        c = out[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            last_comma = None
        elif c == ",":
            last_comma = i
        elif c in "]}":
            if last_comma is not None:
                out[last_comma] = " "
            last_comma = None
        elif not c.isspace():
            last_comma = None
        i += 1
    return "".join(out)


def loads_jsonc(text, source="<string>"):
    """Parse commented JSON text; errors name ``source`` and the line."""
    try:
        return json.loads(strip_comments(text))
    except json.JSONDecodeError as error:
        raise JSONCError(
            f"{source}: invalid JSON at line {error.lineno}, column {error.colno}: "
            f"{error.msg}. Comments (//, #, /* */) and trailing commas are allowed; "
            "check for a missing comma or quote near that line."
        ) from None
    except JSONCError as error:
        raise JSONCError(f"{source}: {error}") from None


def load_jsonc(path):
    """Read and parse a commented JSON file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file not found: {path!r}.")
    with open(path, encoding="utf-8") as f:
        return loads_jsonc(f.read(), source=path)
