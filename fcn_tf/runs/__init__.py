"""Run folders: one home for their layout, locking and checkpoints.

- :mod:`fcn_tf.runs.files`: every file name of a run folder and export, atomic writes.
- :mod:`fcn_tf.runs.lock`: one process per run folder (:class:`RunLock`).
- :mod:`fcn_tf.runs.folder`: choosing/resuming a run folder, resolving its
  checkpoint, reading its config, normalisation and class info.

This package sits above config, data, models and preprocessing and below
training, inference, evaluation and export. Loading a model for inference is
:func:`fcn_tf.inference.load_for_inference`, which reads run folders through
this package.
"""

from fcn_tf.runs.files import (
    atomic_save_model,
    atomic_write_json,
    atomic_write_text,
    read_json,
)
from fcn_tf.runs.folder import (
    check_class_count,
    choose_run_dir,
    class_info,
    create_run_dir,
    find_run_dir,
    is_saved_model,
    read_preprocessing,
    read_run_config,
    read_state,
    resolve_checkpoint,
    resolve_preprocessing,
)
from fcn_tf.runs.lock import RunFolderLocked, RunLock

__all__ = [
    "RunFolderLocked",
    "RunLock",
    "atomic_save_model",
    "atomic_write_json",
    "atomic_write_text",
    "check_class_count",
    "choose_run_dir",
    "class_info",
    "create_run_dir",
    "find_run_dir",
    "is_saved_model",
    "read_json",
    "read_preprocessing",
    "read_run_config",
    "read_state",
    "resolve_checkpoint",
    "resolve_preprocessing",
]
