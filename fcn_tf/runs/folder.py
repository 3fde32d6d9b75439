"""A run folder's layout: which folder to use, its checkpoints, config and normalisation.

A run folder holds ``fcn_tf-run.json`` (its marker, written first),
``state.json`` (the last completed epoch, the best metric, which checkpoint
is current, whether the run finished), ``config.json`` (the effective
config), ``preprocessing.json``, ``best.keras``, ``checkpoints/``, logs and
figures (names in :mod:`fcn_tf.runs.files`). ``state.json`` is replaced only
after the checkpoint it names is complete.

Which folders training writes into (:func:`is_run_folder`): a folder with
the marker; a folder from a version before the marker, recognised by what
that version wrote (a ``config.json`` whose top-level keys are config
sections, model, data and train among them, or a ``state.json`` with
``epochs_completed`` and ``finished``); or a folder holding nothing, or only
a lock and temporary files. Any other existing folder is the user's: training
refuses it before writing anything. An older run folder that is not
recognised can be resumed after creating an empty ``fcn_tf-run.json`` in it.

Which keys may change when a run is resumed: those of the ``eval``,
``export`` and ``output`` sections (they act after training, or only on how
it is shown and where the folder is); ``model``, ``data`` and ``train`` must
match, else the run is another run.

Example:
    >>> import tempfile
    >>> parent = tempfile.mkdtemp()
    >>> choose_run_dir(parent, "run", {"a": 1})
    (..., False)
"""

import os
import re

from fcn_tf.config.run_config import SECTION_NAMES, parse_config
from fcn_tf.data.palette import default_class_names, default_colors
from fcn_tf.models import default_preprocessing, get_model_spec, list_backbones, list_models
from fcn_tf.preprocessing import Preprocessing
from fcn_tf.runs.files import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVES_FILE,
    EXPORT_DIR,
    HISTORY_FILE,
    KERAS_SUFFIX,
    LOCK_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PREPROCESSING_FILE,
    RUN_MARKER,
    SAVED_MODEL_FILE,
    STATE_FILE,
    TENSORBOARD_DIR,
    TMP_PREFIX,
    DamagedFileError,
    atomic_write_json,
    read_json,
)

# Sections whose keys may change when an unfinished run is resumed (see module doc).
RESUMABLE_SECTIONS = ("eval", "export", "output")
# What the files and folders of a run folder must be when they exist.
_RUN_FILES = (RUN_MARKER, STATE_FILE, CONFIG_FILE, PREPROCESSING_FILE, BEST_CHECKPOINT,
              METRICS_FILE, HISTORY_FILE, CURVES_FILE, PREDICTIONS_FILE, LOCK_FILE)
_RUN_DIRS = (CHECKPOINT_DIR, TENSORBOARD_DIR, EXPORT_DIR)
# state.json's checkpoint: a .keras file directly inside checkpoints/.
_CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_DIR}/[^/\\]+\.keras$")
_FRESH_HINT = ("Restore it, or pass fresh=True to start a new run folder beside it (this one "
               "is kept as it is).")


class RunFolderError(ValueError):
    """A folder that is not a usable run folder; the message names it and the fix."""


def read_state(run_dir):
    """The run's ``state.json`` as a dict, or ``None`` if there is none yet.

    Raises:
        DamagedFileError: not JSON. RunFolderError: JSON, but not a state
            this package writes (e.g. a checkpoint outside ``checkpoints/``).
    """
    path = os.path.join(run_dir, STATE_FILE)
    state = read_json(path)
    problem = None if state is None else _state_problem(state)
    if problem:
        raise RunFolderError(f"{path}: {problem}; the file is damaged or was edited.")
    return state


def _state_problem(state):
    if not isinstance(state, dict):
        return f"expected a JSON object, received {type(state).__name__}"
    done = state.get("epochs_completed", 0)
    if not isinstance(done, int) or isinstance(done, bool) or done < 0:
        return f"epochs_completed is {done!r}, expected a whole number >= 0"
    checkpoint = state.get("checkpoint")
    if checkpoint is not None and not (isinstance(checkpoint, str)
                                       and _CHECKPOINT_NAME.match(checkpoint)):
        return (f"checkpoint is {checkpoint!r}, expected {CHECKPOINT_DIR}/epochNNNN.keras "
                "inside the run folder")
    history = state.get("history", [])
    if not isinstance(history, list) or not all(
            isinstance(row, dict) and isinstance(row.get("epoch"), int) for row in history):
        return "history is not a list of epoch records (each with its epoch number)"
    return None


def is_run_folder(path):
    """Whether ``path`` is a run folder this package wrote (marker, or an older run's files)."""
    if os.path.isfile(os.path.join(path, RUN_MARKER)):
        return True
    config, state = (_quietly_read(os.path.join(path, name)) for name in (CONFIG_FILE, STATE_FILE))
    from_config = (isinstance(config, dict) and set(config) <= set(SECTION_NAMES)
                   and {"model", "data", "train"} <= set(config))
    from_state = isinstance(state, dict) and {"epochs_completed", "finished"} <= set(state)
    return from_config or from_state


def _quietly_read(path):
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def _holds_nothing_of_its_own(path):
    """Whether ``path`` is empty but for a lock and temporary files (a run that died early)."""
    return all(name == LOCK_FILE or name.startswith(TMP_PREFIX) for name in os.listdir(path))


def check_run_folder(path):
    """Raise :class:`RunFolderError` unless the existing ``path`` is a run folder.

    ``path`` must be a folder, and a run folder (:func:`is_run_folder`) or
    one that holds nothing yet.
    """
    if not os.path.isdir(path):
        what = "a broken link" if not os.path.exists(path) else "a file"
        raise RunFolderError(
            f"output.name: {path} is {what}, not a run folder; nothing was written. Give "
            "output.name another name, or move it away."
        )
    if not (is_run_folder(path) or _holds_nothing_of_its_own(path)):
        names = sorted(os.listdir(path))
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise RunFolderError(
            f"output.name: {path} exists but is not a run folder of fcn_tf (it holds {shown} "
            f"and no {RUN_MARKER}); training writes only into folders it made, so nothing "
            "was written. Give output.name another name (or output.dir another folder), move "
            "the folder away, or pass fresh=True to start a new run folder beside it. If it "
            f"is a run folder of an older fcn_tf, create an empty file {RUN_MARKER} in it "
            "to resume it."
        )


def check_resumable(path):
    """Raise :class:`RunFolderError` unless training can go on in the run folder ``path``.

    It must be writable, and its known files and folders files and folders.
    """
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunFolderError(
            f"{path} is not writable by this user, so its run cannot be resumed here. Ask "
            "its owner, give output.name another name, or pass fresh=True to start a new run "
            "folder beside it."
        )
    for names, check, kind in ((_RUN_FILES, os.path.isfile, "file"),
                               (_RUN_DIRS, os.path.isdir, "folder")):
        for name in names:
            item = os.path.join(path, name)
            if os.path.lexists(item) and not check(item):
                raise RunFolderError(
                    f"{item} should be the run's {name} {kind} but is not a {kind}. Move it "
                    "away, or pass fresh=True to start a new run folder beside this one."
                )


def _candidates(parent, name):
    yield os.path.join(parent, name)
    index = 2
    while True:
        yield os.path.join(parent, f"{name}-{index}")
        index += 1


def check_parent(parent):
    """Raise a clear error when ``parent`` (the folder of run folders) cannot hold folders."""
    existing = os.path.abspath(parent)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(
            f"parent: {existing} is a file, so run folders cannot be made under {parent}. "
            "Choose another folder or move the file."
        )
    if not os.access(existing, os.W_OK):
        raise PermissionError(f"parent: {existing} is not writable; choose another folder.")


def choose_run_dir(parent, name, effective_config, fresh=False, create=True):
    """Pick the run folder: resume the latest unfinished run or start a new one.

    The folders ``name``, ``name-2``, ``name-3`` ... are looked at in order.
    The last existing one is resumed if it is unfinished and was started
    with the same config (keys of :data:`RESUMABLE_SECTIONS` may differ); a
    finished run is never touched: a new folder is named next to it. An
    existing folder that is not a run folder is refused (see the module
    doc). ``fresh=True`` always names a new folder.

    Args:
        parent: the folder holding run folders.
        name: the run name.
        effective_config: the config dict the run is started with.
        fresh: always start a new folder.
        create: make a new folder now; with ``False`` the caller makes it
            (with :func:`create_run_dir`) once every check has passed.

    Returns:
        ``(run_dir, resuming)``; ``resuming`` is true when ``state.json`` exists.

    Raises:
        RunFolderError: the folder is not a run folder, or its state or
            config is damaged. ValueError: an unfinished run exists with a
            different config.
    """
    check_parent(parent)
    last = None
    for candidate in _candidates(parent, name):
        if not os.path.lexists(candidate):
            break
        last = candidate
    if last is not None and not fresh:
        check_run_folder(last)
        state = _for_resume(read_state, last)
        if state is None or not state.get("finished"):
            check_resumable(last)
            saved = _for_resume(read_config_dict, last)
            differing = [] if saved is None else config_changes(saved, effective_config)
            differing = [key for key in differing if not may_change_on_resume(key)]
            if differing:
                raise ValueError(
                    f"Run folder {last} holds an unfinished run started with a different "
                    f"config (differs at: {', '.join(differing[:8])}). Run with the same "
                    "config to resume it (only the eval, export and output sections may "
                    "change), or pass fresh=True to start a new run folder (or give "
                    "output.name a new name)."
                )
            # No state yet: the run stopped before its first epoch ended.
            return last, state is not None
    for candidate in _candidates(parent, name):
        if not os.path.lexists(candidate):
            if create:
                create_run_dir(candidate)
            return candidate, False
    raise AssertionError("unreachable")


def _for_resume(read, run_dir):
    """``read(run_dir)``; a damaged file's error gets the way out."""
    try:
        return read(run_dir)
    except (DamagedFileError, RunFolderError) as error:
        raise RunFolderError(f"{error} {_FRESH_HINT}") from None


def create_run_dir(run_dir):
    """Make ``run_dir`` (and its parents) with its marker; an existing folder gets the marker.

    Called for a new folder, and for an existing one that
    :func:`check_run_folder` accepted once it is locked, so that every folder
    training works in carries the marker before any other file.
    """
    os.makedirs(run_dir, exist_ok=True)
    marker = os.path.join(run_dir, RUN_MARKER)
    if not os.path.exists(marker):
        atomic_write_json(marker, {
            "written_by": "fcn_tf", "kind": "run folder", "format": 1,
            "about": "python -m fcn_tf.train writes and resumes only folders holding this file",
        })
    return run_dir


def may_change_on_resume(key):
    """Whether the dotted config ``key`` may differ when a run is resumed."""
    return key.split(".", 1)[0] in RESUMABLE_SECTIONS


_ABSENT = object()


def config_changes(saved, effective):
    """The dotted keys where ``effective`` differs from a run's saved config.

    A key the saved config lacks (added to the package after the run started)
    is no change when ``effective`` holds its default: the saved config read
    with today's defaults has the same value there.
    """
    differing = _diff_keys(saved, effective)
    if not differing:
        return []
    try:
        with_defaults = parse_config(saved).to_dict()
    except (ValueError, TypeError, KeyError):  # ConfigError is a ValueError
        return differing
    return [key for key in differing
            if _lookup(saved, key) is not _ABSENT
            or _lookup(with_defaults, key) != _lookup(effective, key)]


def _lookup(document, dotted):
    for part in dotted.split("."):
        if not isinstance(document, dict) or part not in document:
            return _ABSENT
        document = document[part]
    return document


def _diff_keys(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


# --- reading a finished (or running) run folder --------------------------------


def is_saved_model(path):
    """Whether ``path`` is a SavedModel folder (one holding ``saved_model.pb``)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, SAVED_MODEL_FILE))


def find_run_dir(path):
    """The run folder of a checkpoint: the folder itself, its parent or grandparent.

    A run folder is one holding ``config.json``; ``None`` when there is none.
    """
    path = os.path.abspath(path)
    candidates = [path] if os.path.isdir(path) else []
    parent = os.path.dirname(path)
    candidates += [parent, os.path.dirname(parent)]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, CONFIG_FILE)):
            return folder
    return None


def resolve_checkpoint(path):
    """A ``.keras`` file from a ``.keras`` file or a run folder.

    A run folder gives its ``best.keras``, else the last checkpoint named in
    ``state.json``.

    Args:
        path: a ``.keras`` file or a run folder.

    Raises:
        FileNotFoundError: no such path, or a run folder without a checkpoint.
        ValueError: a file that is not ``.keras``.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"checkpoint {path}: no such file or folder. Give a .keras file or a run "
            "folder (one with best.keras or checkpoints/)."
        )
    if os.path.isdir(path):
        best = os.path.join(path, BEST_CHECKPOINT)
        if os.path.exists(best):
            return best
        state = read_state(path)
        if state and state.get("checkpoint"):
            return os.path.join(path, state["checkpoint"])
        raise FileNotFoundError(
            f"checkpoint {path}: a folder with no {BEST_CHECKPOINT} and no checkpoint yet; "
            "train it first or give a .keras file."
        )
    if not path.endswith(KERAS_SUFFIX):
        raise ValueError(
            f"checkpoint {path}: expected a .keras file or a run folder, received a "
            f"file ending in {os.path.splitext(path)[1]!r}."
        )
    return path


def read_config_dict(run_dir):
    """The raw ``config.json`` of a run folder, or ``None``; a non-object raises RunFolderError."""
    path = os.path.join(run_dir, CONFIG_FILE)
    document = read_json(path)
    if document is not None and not isinstance(document, dict):
        raise RunFolderError(f"{path}: expected a JSON object, received "
                             f"{type(document).__name__}; the file is damaged or was edited.")
    return document


def read_run_config(run_dir, document=None):
    """The :class:`~fcn_tf.config.run_config.Config` stored in a run folder's config.json."""
    path = os.path.join(run_dir, CONFIG_FILE)
    document = read_json(path) if document is None else document
    return parse_config(document, base_dir=run_dir, source=path)


def read_preprocessing(run_dir):
    """The run folder's ``preprocessing.json`` as a :class:`Preprocessing`, or ``None``."""
    data = read_json(os.path.join(run_dir, PREPROCESSING_FILE))
    return None if data is None else Preprocessing.from_dict(data)


def class_info(num_classes, config=None):
    """Class names, colours, ignore label and input channels, from ``config`` or defaults."""
    if config is not None:
        data = config.data
        return {"num_classes": data.num_classes, "class_names": list(data.class_names),
                "colors": [list(c) for c in data.colors], "ignore_label": data.ignore_label,
                "image_channels": data.image_channels}
    return {"num_classes": num_classes, "class_names": default_class_names(num_classes),
            "colors": [list(c) for c in default_colors(num_classes)], "ignore_label": 255,
            "image_channels": None}


def model_classes(model):
    """The number of classes a built model predicts (2 for one binary logit)."""
    outputs = int(model.output_shape[-1])
    return 2 if outputs == 1 else outputs


def check_class_count(model, num_classes, source):
    """Raise when ``model`` predicts a different number of classes than the data has.

    Args:
        model: a Keras model.
        num_classes: the data's class count.
        source: the checkpoint path, named in the message.
    """
    classes = model_classes(model)
    if classes != num_classes:
        raise ValueError(
            f"checkpoint {source} predicts {classes} classes but the config's "
            f"data.num_classes is {num_classes}. Use the config the checkpoint was trained "
            "with (RUN/config.json) or a checkpoint trained on this data."
        )


def backbone_of_model(model):
    """The backbone name encoded in a built model's name (``fcn8s_vgg16`` -> ``vgg16``)."""
    name = model.name
    for arch in list_models():
        for backbone in list_backbones(arch):
            if name in (f"{arch}_{backbone}", arch):
                return backbone if name != arch else list_backbones(arch)[0]
    return None


def resolve_preprocessing(checkpoint, model=None, config=None, channels=None):
    """``(Preprocessing, source)`` for a checkpoint, and a sentence saying where it came from.

    Looked up in order: ``preprocessing.json`` of the checkpoint's run folder
    (the folder itself, or the folder holding the ``.keras`` file); the
    backbone default of ``config.model`` or of the model's name.
    """
    run_dir = find_run_dir(checkpoint)
    stored = read_preprocessing(run_dir) if run_dir else None
    if stored is not None:
        path = os.path.join(run_dir, PREPROCESSING_FILE)
        return stored.for_channels(channels or len(stored.mean)), path
    backbone = None
    if config is not None:
        backbone = get_model_spec(config.model.name).backbone_or_default(config.model.backbone)
    elif model is not None:
        backbone = backbone_of_model(model)
    if backbone is None:
        raise ValueError(
            f"checkpoint {checkpoint}: no preprocessing.json in a run folder next to it and "
            f"the backbone cannot be told from the model name {getattr(model, 'name', None)!r}. "
            "Keep the checkpoint inside its run folder, or give the run config."
        )
    channels = channels or (config.data.image_channels if config is not None else 3)
    return (default_preprocessing(backbone, channels),
            f"the {backbone} backbone default (no preprocessing.json found next to {checkpoint})")
