"""Run folders: one home for their layout, locking, checkpoints and loading.

- :mod:`fcn_tf.runs.files`: every file name of a run folder and export, atomic writes.
- :mod:`fcn_tf.runs.lock`: one process per run folder (:class:`RunLock`).
- :mod:`fcn_tf.runs.folder`: choosing/resuming a run folder, resolving its
  checkpoint, reading its config, normalisation and class info.
- :mod:`fcn_tf.runs.loading`: :func:`load_for_inference` (a ``.keras`` file,
  a run folder or an exported SavedModel, ready for raw pixels).

This package sits above config, data, models and preprocessing and below
training, inference, evaluation and export.
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
from fcn_tf.runs.loading import InferenceModel, load_for_inference, load_saved_model
from fcn_tf.runs.lock import RunFolderLocked, RunLock

__all__ = [
    "InferenceModel",
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
    "load_for_inference",
    "load_saved_model",
    "read_json",
    "read_preprocessing",
    "read_run_config",
    "read_state",
    "resolve_checkpoint",
    "resolve_preprocessing",
]
