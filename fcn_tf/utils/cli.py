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
