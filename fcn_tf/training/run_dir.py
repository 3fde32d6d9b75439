"""Run folders: where a run's files live, how it resumes, and atomic writes.

A run folder holds ``state.json`` (the last completed epoch, the best
metric, which checkpoint is current, whether the run finished), the
checkpoints, ``config.json`` (the effective config), logs and figures.

Durability: every file is written to a temporary name in the same folder and
moved into place with :func:`os.replace`, which is atomic on POSIX and
Windows. ``state.json`` is replaced only after the checkpoint it names is
complete, so a crash at any moment (``kill -9`` included) leaves a state that
points at a whole checkpoint.
"""

import json
import os
import tempfile

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically (temp file + ``os.replace``)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path, data):
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_save_model(model, path):
    """``model.save(path)`` through a temporary ``.keras`` file and ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_state(run_dir):
    """The run's ``state.json`` as a dict, or ``None`` if there is none yet."""
    path = os.path.join(run_dir, STATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _candidates(parent, name):
    yield os.path.join(parent, name)
    index = 2
    while True:
        yield os.path.join(parent, f"{name}-{index}")
        index += 1


def choose_run_dir(parent, name, effective_config, fresh=False):
    """Pick the run folder: resume the latest unfinished run or start a new one.

    The folders ``name``, ``name-2``, ``name-3`` ... are looked at in order.
    The last existing one is resumed if it is unfinished and was started
    with the same config; a finished run is never touched: a new folder is
    made next to it. ``fresh=True`` always makes a new folder.

    Returns:
        ``(run_dir, resuming)``.

    Raises:
        ValueError: an unfinished run exists with a different config.
    """
    last = None
    for candidate in _candidates(parent, name):
        if not os.path.exists(candidate):
            break
        last = candidate
    if last is not None and not fresh:
        state = read_state(last)
        if state is None or not state.get("finished"):
            saved = _read_json(os.path.join(last, CONFIG_FILE))
            if saved is not None and saved != effective_config:
                differing = _diff_keys(saved, effective_config)
                raise ValueError(
                    f"Run folder {last} holds an unfinished run started with a different "
                    f"config (differs at: {', '.join(differing[:8])}). Run with the same "
                    "config to resume it, or pass --fresh to start a new run folder "
                    "(or --set output.name=NEW)."
                )
            # No state yet: the run stopped before its first epoch ended.
            return last, state is not None
    for candidate in _candidates(parent, name):
        if not os.path.exists(candidate):
            os.makedirs(candidate)
            return candidate, False
    raise AssertionError("unreachable")


def _read_json(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _diff_keys(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
