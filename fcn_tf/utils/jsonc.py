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


# A config is a few kilobytes; a long list of stems a few hundred. Anything this
# large is the wrong file, and reading it whole would only waste memory.
MAX_BYTES = 16 * 1024 * 1024
# Deep enough for any config (the deepest, data.splits.NAME.stems, is 4), far
# below the depth at which Python's recursive JSON reader gives up.
MAX_DEPTH = 32


def loads_jsonc(text, source="<string>"):
    """Parse commented JSON text; errors name ``source`` and the line.

    A key given twice in one object is refused (naming both lines): the
    standard reader would silently keep the last one.
    """
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark, as Windows editors write
    duplicates = []
    try:
        document = json.loads(strip_comments(text),
                              object_pairs_hook=lambda pairs: _object(pairs, duplicates))
    except json.JSONDecodeError as error:
        raise JSONCError(
            f"{source}: invalid JSON at line {error.lineno}, column {error.colno}: "
            f"{error.msg}. Comments (//, #, /* */) and trailing commas are allowed; "
            "check for a missing comma or quote near that line."
        ) from None
    except RecursionError:
        raise JSONCError(_too_deep(source)) from None
    except JSONCError as error:
        raise JSONCError(f"{source}: {error}") from None
    if duplicates:
        key, first, second = find_duplicate_key(strip_comments(text))
        raise JSONCError(
            f"{source}: key {key!r} appears twice (lines {first} and {second}); only one can "
            "hold. Delete the line you do not mean."
        )
    if nesting_depth(document) > MAX_DEPTH:
        raise JSONCError(_too_deep(source))
    return document


def _object(pairs, duplicates):
    document = dict(pairs)
    if len(document) != len(pairs):
        duplicates.append(True)
    return document


def _too_deep(source):
    return (f"{source}: lists or objects nested more than {MAX_DEPTH} levels deep; a config "
            "needs a few. Is this the right file?")


def nesting_depth(document):
    """How deeply lists and objects nest in ``document`` (iterative: no recursion limit)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return deepest


def find_duplicate_key(text):
    """``(dotted key, first line, second line)`` of the first key repeated in one object.

    ``text`` is valid JSON (comments already blanked, so lines are the
    file's). ``None`` when every object's keys are distinct.
    """
    stack = []  # one frame per open object or list: [kind, {key: line}, path part, expect_key]
    line, i, n = 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            frame = stack[-1] if stack else None
            if frame is not None and frame[0] == "{" and frame[3]:
                key = json.loads(text[i : end + 1])
                if key in frame[1]:
                    path = "".join(_path_part(f) for f in stack[:-1]) + _path_part(frame, key)
                    return path.lstrip("."), frame[1][key], line
                frame[1][key], frame[2], frame[3] = line, key, False
            i = end + 1
            continue
        if c == "\n":
            line += 1
        elif c in "{[":
            stack.append([c, {}, 0 if c == "[" else None, c == "{"])
        elif c in "}]":
            stack.pop()
        elif c == "," and stack:
            if stack[-1][0] == "{":
                stack[-1][3] = True
            else:
                stack[-1][2] += 1
        i += 1
    return None


def _path_part(frame, key=None):
    if frame[0] == "[":
        return f"[{frame[2]}]"
    return f".{frame[2] if key is None else key}"


def load_jsonc(path):
    """Read and parse a commented JSON config file: one JSON object.

    A UTF-8 byte-order mark is accepted. A missing file raises
    :class:`FileNotFoundError`; a folder, an unreadable, empty, binary,
    non-UTF-8 or oversized file, or a document that is not an object raises
    :class:`JSONCError` naming the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Config file not found: {path!r}.")
    if os.path.isdir(path):
        raise JSONCError(f"{path}: is a folder, expected a config file (e.g. {path}/config.json).")
    if not os.path.isfile(path):
        raise JSONCError(f"{path}: is not a regular file (a device or pipe); give a config file.")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as error:
        raise JSONCError(f"{path}: cannot be read ({error.strerror}).") from None
    if len(data) > MAX_BYTES:
        raise JSONCError(f"{path}: larger than {MAX_BYTES // 2**20} MB; a config is a few "
                         "kilobytes. Is this the right file?")
    if b"\0" in data:
        raise JSONCError(f"{path}: a binary file (it holds NUL bytes), expected a JSON config.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise JSONCError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} on line {line}). Save the "
            "file as UTF-8."
        ) from None
    if not text.strip("\ufeff \t\r\n"):
        raise JSONCError(f"{path}: the file is empty; a config is a JSON object ({{}} for every "
                         "default).")
    document = loads_jsonc(text, source=path)
    if not isinstance(document, dict):
        raise JSONCError(
            f"{path}: expected a JSON object {{...}} at top level, received "
            f"{_kind(document)}. A config looks like {{\"train\": {{\"epochs\": 3}}}}."
        )
    return document


def _kind(value):
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else f"{type(value).__name__} {value!r}"
