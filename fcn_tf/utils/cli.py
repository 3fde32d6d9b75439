"""What every command-line verb does with an error a user can fix."""

import os
import sys


def report_error(error):
    """Print ``error: MESSAGE`` to stderr and return exit status 2.

    With ``FCN_TF_DEBUG=1`` in the environment the error is re-raised instead,
    so the full traceback is shown.
    """
    if os.environ.get("FCN_TF_DEBUG"):
        raise error
    print(f"error: {error}\n(set FCN_TF_DEBUG=1 for the traceback)", file=sys.stderr)
    return 2
