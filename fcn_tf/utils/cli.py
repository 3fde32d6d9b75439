"""What every command-line verb does with an error a user can fix."""

import os
import re
import sys


def flag_message(message, flags):
    """``message`` with library parameter names replaced by the CLI's flags.

    A parameter is replaced where it starts the message or a clause
    (after ``": "``, ``"; "`` or ``". "``), and ``name=True`` anywhere.

    Example:
        >>> flag_message("out /x exists. Pass overwrite=True", {"out": "--out",
        ...              "overwrite": "--overwrite"})
        '--out /x exists. Pass --overwrite'
    """
    for name, flag in (flags or {}).items():
        message = re.sub(rf"(^|: |; |\. ){re.escape(name)}(?=[ :])", rf"\g<1>{flag}", message)
        message = message.replace(f"{name}=True", flag)
    return message


def progress_verbosity(quiet, stream=None):
    """Keras' ``verbose`` for a command: 0 quiet, 1 progress bars on a terminal, 2 plain lines.

    Progress bars redraw with carriage returns and colour codes, which a log
    file or a pipe keeps as one unreadable run of text; there Keras' ``2``
    writes one line per epoch instead. ``stream`` defaults to stdout.
    """
    if quiet:
        return 0
    stream = sys.stdout if stream is None else stream
    return 1 if stream.isatty() else 2


def report_error(error, flags=None):
    """Print ``error: MESSAGE`` to stderr and return exit status 2.

    ``flags`` maps library parameter names in the message to the CLI's flags
    (``{"checkpoint": "--model"}``). With ``FCN_TF_DEBUG=1`` in the
    environment the error is re-raised instead, so the full traceback is shown.
    """
    if os.environ.get("FCN_TF_DEBUG"):
        raise error
    message = flag_message(str(error), flags)
    print(f"error: {message}\n(set FCN_TF_DEBUG=1 for the traceback)", file=sys.stderr)
    return 2
