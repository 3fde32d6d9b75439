"""Files and folders created as the user's umask says, not with ``tempfile``'s private 0600/0700.

``tempfile.mkstemp``/``mkdtemp`` make private files and folders; anything of
the package's that is built under a temporary name and then renamed into
place (run files, exports, the built-in dataset) gets the mode a plain
``open``/``mkdir`` would have given it, so another user of a shared folder
can read it.
"""

import os
import tempfile


def current_umask():
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def apply_umask(path):
    """Give ``path`` the mode a plain ``open``/``mkdir`` would have: 0666/0777 less the umask."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~current_umask())


def make_temp_dir(parent, prefix=".tmp-"):
    """A new, empty temporary folder in ``parent`` with the umask's mode (not 0700).

    For a folder that is built in place and then renamed to its final name,
    so that it ends up as readable as one made with ``mkdir``.
    """
    folder = tempfile.mkdtemp(dir=parent, prefix=prefix)
    apply_umask(folder)
    return folder
