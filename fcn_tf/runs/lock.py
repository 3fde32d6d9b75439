"""One process per run folder: an exclusive lock that names its holder.

The lock is ``RUN/.lock``, held with ``fcntl.flock`` while a trainer works
in the folder; the file holds the holder's pid and host. The operating
system drops the lock when the process ends (``kill -9`` included), so the
lock of a dead process is simply taken over. Where ``fcntl`` does not exist
(Windows) the pid in the file is checked instead.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     pass
"""

import errno
import os
import socket

from fcn_tf.runs.files import LOCK_FILE

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class RunFolderLocked(RuntimeError):
    """Another live process holds the run folder."""


def pid_alive(pid):
    """Whether a process with this pid runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path):
    try:
        with open(path, encoding="utf-8") as f:
            fields = f.read().split()
        return int(fields[0]), (fields[1] if len(fields) > 1 else "?")
    except (OSError, ValueError, IndexError):
        return None, "?"


class RunLock:
    """Exclusive lock of a run folder, a context manager.

    Args:
        run_dir: the run folder (must exist).

    Raises:
        RunFolderLocked: another live process holds it; the message names its pid.
    """

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_FILE)
        self._file = None

    def acquire(self):
        f = open(self.path, "a+", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                f.close()
                if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                self._refuse()
        else:
            pid, _ = _holder(self.path)
            if pid is not None and pid != os.getpid() and pid_alive(pid):
                f.close()
                self._refuse()
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {socket.gethostname()}\n")
        f.flush()
        self._file = f
        return self

    def _refuse(self):
        pid, host = _holder(self.path)
        who = f"process {pid} on {host}" if pid is not None else "another process"
        raise RunFolderLocked(
            f"run_dir {self.run_dir} is in use by {who} (lock file {self.path}). Wait for "
            "it to finish or stop it; a lock left by a process that has died is taken over "
            "automatically."
        )

    def release(self):
        if self._file is not None:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
