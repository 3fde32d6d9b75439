"""The training driver behind ``python -m fcn_tf.train``.

:func:`train` runs ``model.fit`` on ``tf.data`` pipelines with Keras
callbacks, in a run folder that survives interruption: after every epoch the
model and optimizer are checkpointed atomically, and running the same command
again resumes from the last completed epoch. Each epoch's data comes from a
pipeline seeded with ``data.seed + epoch``, so a resumed run sees the same
batches, in the same order, as an uninterrupted one.

Training writes only into run folders (see :mod:`fcn_tf.runs.folder`). When
the end of a run (evaluation, pictures, export) fails, the trained model is
kept and the run stays unfinished: the same command, with the ``eval``,
``export`` or ``output`` sections corrected if they were the cause, skips the
training and does the end again.
"""

import contextlib
import dataclasses
import json
import os
import time
import zipfile

import keras
import numpy as np

from fcn_tf.data import build_dataset, build_training_epochs, dataset_info, split_files
from fcn_tf.data.decode import read_image_array, read_mask_array
from fcn_tf.evaluation import evaluate_split
from fcn_tf.export import export_metadata, export_model
from fcn_tf.visualize import denormalize, predict_classes, save_curves, save_prediction_grid
from fcn_tf.config import ConfigError
from fcn_tf.precision import resolve_precision
from fcn_tf.backbones import backbone_layers
from fcn_tf.runs import (
    RunLock,
    choose_run_dir,
    create_run_dir,
    read_preprocessing,
    read_state,
    resolve_checkpoint,
)
from fcn_tf.runs.folder import RunFolderError, config_changes, read_config_dict
from fcn_tf.runs.files import (
    CONFIG_FILE,
    CURVES_FILE,
    EXPORT_DIR,
    HISTORY_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PREPROCESSING_FILE,
    TENSORBOARD_DIR,
    WORKERS_DIR,
    atomic_write_json,
    atomic_write_text,
)
from fcn_tf.training import setup
from fcn_tf.training.jit import choose_jit_compile
from fcn_tf.training.multi_worker import patched_fit
from fcn_tf.training.callbacks import (
    LearningRateLogger,
    PredictionImages,
    RunState,
    StopOnNaN,
    TrainingDiverged,
)


class RunEndFailed(RuntimeError):
    """Training finished but the end of the run (evaluation, pictures, export) failed."""


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    epochs_completed: int
    best_metric: float | None
    metrics: dict
    seconds: float
    resumed: bool


def epoch_datasets(config, first_epoch, last_epoch, steps, preprocessing, input_context=None):
    """Epochs ``first_epoch .. last_epoch - 1`` of training batches, one after another.

    Epoch ``e`` is the training pipeline seeded with ``data.seed + e``,
    repeated if needed and cut to ``steps`` global steps. Under
    ``tf.distribute`` one pipeline feeds several replicas, one per-replica
    batch each per step, so it yields ``steps * replicas_per_pipeline`` batches.
    """
    if input_context is not None:
        steps *= input_context.num_replicas_in_sync // input_context.num_input_pipelines
    return build_training_epochs(
        config.data, "train", batch_size=config.train.batch_size, preprocessing=preprocessing,
        seeds=[config.data.seed + epoch for epoch in range(first_epoch, last_epoch)],
        steps=steps, input_context=input_context,
    )


def _distributed(strategy, make):
    """``make(input_context)`` per input pipeline under ``strategy``."""
    if strategy.num_replicas_in_sync == 1:
        return make(None)
    return strategy.distribute_datasets_from_function(make)


def _worker_output_dir(config):
    """Where this process writes: the run folder, or a scratch folder for non-chief workers.

    Under ``multi_worker`` every worker runs the same callbacks; only the
    chief (task ``chief``, or ``worker`` 0 when there is no chief) writes the
    real run folder, the others write under ``OUTPUT_DIR/.workers/worker-N``.
    """
    if config.train.distribute != "multi_worker":
        return config.output.dir
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    if chief:
        return config.output.dir
    return os.path.join(config.output.dir, WORKERS_DIR, f"{kind}-{index}")


def _steps_per_epoch(config, train_count):
    if config.train.steps_per_epoch:
        return config.train.steps_per_epoch
    steps = train_count // config.train.batch_size
    if steps == 0:
        raise ValueError(
            f"train.batch_size is {config.train.batch_size} but the training split has only "
            f"{train_count} images; lower train.batch_size or set train.steps_per_epoch."
        )
    return steps


def _set_precision(precision, verbose):
    policy, reason = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    if verbose and precision != policy:
        print(f"train.precision {precision}: {policy} ({reason})", flush=True)
    return policy


def _compile(model, config, optimizer, loss, jit_compile):
    model.compile(
        optimizer=optimizer, loss=loss, metrics=setup.build_metrics(config),
        jit_compile=jit_compile,
    )


def _set_backbone_trainable(model, config, trainable):
    for layer in backbone_layers(model, setup.backbone_name(config)):
        layer.trainable = trainable


def _sample_batch(config, preprocessing, count):
    """``count`` validation (or training) images and masks for pictures, at their own size.

    Spread evenly over the split (its first and last image included), so
    that a split of consecutive video frames shows different scenes.
    """
    split = config.train.validation_split or "train"
    files = split_files(config.data, split)
    picks = sorted({int(i) for i in np.linspace(0, len(files) - 1, count).round()}) if files else []
    preprocessing = preprocessing.for_channels(config.data.image_channels)
    images, masks = [], []
    for index in picks:
        image_path, mask_path = files[index]
        pixels = read_image_array(image_path, config.data.image_channels)
        images.append(preprocessing.apply_numpy(pixels))
        masks.append(read_mask_array(mask_path, config.data))
    return images, masks


def train(config, *, fresh=False, verbose=1):
    """Train according to ``config`` (a :class:`~fcn_tf.config.run_config.Config`).

    Returns a :class:`TrainResult`. Raises :class:`TrainingDiverged` when the
    loss stops being finite (the last good checkpoint is kept).
    """
    start = time.time()
    setup.preflight(config)
    effective = config.to_dict()
    parent = _worker_output_dir(config)
    try:
        run_dir, resuming = choose_run_dir(parent, config.output.name, effective, fresh,
                                           create=False)
    except (NotADirectoryError, PermissionError) as error:
        raise ConfigError(f"output.dir: {str(error).removeprefix('parent: ')}") from None
    new_folder = not os.path.exists(run_dir)
    # An existing folder is locked before its state is read; a new one is made
    # (and locked) only once every check that can fail has passed.
    lock = None if new_folder else RunLock(run_dir).acquire()
    try:
        if not new_folder:
            create_run_dir(run_dir)  # a run folder from before the marker gets it now
        return _train_in(config, run_dir, resuming, new_folder, lock, effective, start, verbose)
    finally:
        if lock is not None:
            lock.release()


def _train_in(config, run_dir, resuming, new_folder, lock, effective, start, verbose):
    state = ({} if new_folder else read_state(run_dir)) or {}
    done = int(state.get("epochs_completed", 0))
    keras.utils.set_random_seed(config.train.seed)
    precision = _set_precision(config.train.precision, verbose)
    info = dataset_info(config.data)
    steps = _steps_per_epoch(config, len(split_files(config.data, "train")))
    strategy = setup.build_strategy(config.train.distribute)
    epochs = config.train.epochs

    with strategy.scope():
        loss = setup.build_loss_from_config(config, setup.class_weights(config))
        if resuming and state.get("checkpoint"):
            model = load_checkpoint(os.path.join(run_dir, state["checkpoint"]), compile=True)
            optimizer = model.optimizer
            preprocessing = read_preprocessing(run_dir)
            if preprocessing is None:
                raise RunFolderError(
                    f"{os.path.join(run_dir, PREPROCESSING_FILE)} is missing; the run's "
                    "checkpoint cannot be resumed without its normalisation. Restore it, or "
                    "pass fresh=True to start a new run folder beside this one."
                )
        else:
            model = setup.build_model_from_config(config)
            preprocessing = setup.initialise_weights(model, config)
            optimizer = setup.build_optimizer(config, steps)
            optimizer.build(model.trainable_variables)
    if new_folder:
        create_run_dir(run_dir)
        lock = RunLock(run_dir).acquire()
    try:
        return _fit_in(config, run_dir, resuming, state, done, model, optimizer, loss,
                       preprocessing, info, steps, strategy, precision, epochs, effective, start,
                       verbose)
    finally:
        if new_folder:
            lock.release()


def _fit_in(config, run_dir, resuming, state, done, model, optimizer, loss, preprocessing, info,
            steps, strategy, precision, epochs, effective, start, verbose):
    saved = read_config_dict(run_dir)
    changed = [] if saved is None else config_changes(saved, effective)
    if saved is None or changed:
        # choose_run_dir let only eval/export/output keys differ: they are the run's now.
        atomic_write_json(os.path.join(run_dir, CONFIG_FILE), effective)
    if not (resuming and state.get("checkpoint")):
        atomic_write_json(os.path.join(run_dir, PREPROCESSING_FILE), preprocessing.to_dict())
    action = f"Resuming after epoch {done}" if resuming else "Starting"
    print(f"{action}: run folder {run_dir}", flush=True)
    if changed:
        print(f"Changed since the run started (taken from this config): {', '.join(changed)}",
              flush=True)
    if done >= epochs:
        print(f"Training is complete ({done} epochs); finishing the run.", flush=True)

    val = None
    if config.train.validation_split:
        val = _distributed(strategy, lambda ctx: build_dataset(
            config.data, config.train.validation_split, training=False,
            batch_size=config.train.batch_size, preprocessing=preprocessing, input_context=ctx,
        ))
    monitor = "val_mean_iou" if val is not None else "mean_iou"
    nan_stop = StopOnNaN(lambda: _first_epoch_loss(run_state.state),
                         config.train.divergence_factor)
    run_state = RunState(run_dir, monitor=monitor, total_epochs=epochs,
                         diverged=lambda: nan_stop.failure is not None)
    run_state.state.setdefault("precision", precision)  # what "auto" became (kept on resume)
    if "jit_compile" not in run_state.state:
        with strategy.scope():
            jit_compile, record = choose_jit_compile(
                config, model, lambda: setup.build_optimizer(config, steps), loss, precision)
        run_state.state["jit_compile"] = record
    jit_compile = run_state.state["jit_compile"]["jit_compile"]
    if verbose and config.train.jit_compile == "auto":
        print(f"train.jit_compile {run_state.state['jit_compile']['reason']}", flush=True)
    callbacks = [LearningRateLogger(), nan_stop, run_state, _HistoryFiles(run_dir, run_state)]
    if config.output.tensorboard:
        log_dir = os.path.join(run_dir, TENSORBOARD_DIR)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False))
        if config.output.sample_images:
            images, masks = _sample_batch(config, preprocessing, min(2, config.output.sample_images))
            callbacks.append(PredictionImages(log_dir, images, masks, info.colors,
                                              info.ignore_label, preprocessing))

    freeze = config.train.freeze_backbone_epochs
    phases = []
    if done < min(freeze, epochs):
        phases.append((done, min(freeze, epochs), False))
    if max(done, freeze) < epochs:
        phases.append((max(done, freeze), epochs, True))
    for first, last, backbone_trainable in phases:
        with strategy.scope():
            if freeze:
                _set_backbone_trainable(model, config, backbone_trainable)
            _compile(model, config, optimizer, loss, jit_compile)
        data = _distributed(strategy, lambda ctx, a=first, b=last: epoch_datasets(
            config, a, b, steps, preprocessing, ctx))
        multi_worker = config.train.distribute == "multi_worker"
        with strategy.scope(), (patched_fit() if multi_worker else contextlib.nullcontext()):
            if multi_worker:
                # Keras 3.15's symbolic build reduces a sample (x, y) batch with
                # strategy.reduce, which MultiWorkerMirroredStrategy rejects for a
                # nested structure. Without a captured strategy Keras defers the
                # build to the first traced step and takes the strategy from scope.
                model._distribute_strategy = None
            model.fit(
                data, epochs=last, initial_epoch=first, steps_per_epoch=steps,
                validation_data=val, callbacks=callbacks, verbose=verbose, shuffle=False,
            )
        if nan_stop.failure:
            raise TrainingDiverged(nan_stop.message(
                run_dir, checkpoint_kept=bool(run_state.state.get("checkpoint"))))

    try:
        metrics = finish_run(run_dir, config, run_state, preprocessing, info, verbose)
    except RunFolderError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure here strands a trained model
        raise RunEndFailed(
            f"training finished ({run_state.state['epochs_completed']} epochs, checkpoints kept "
            f"in {run_dir}) but the end of the run failed: {type(error).__name__}: {error} "
            "Fix the cause and run the same command again: it skips the training and does "
            "the end again (the eval, export and output sections may be changed for it)."
        ) from error
    seconds = time.time() - start
    run_state.mark_finished(seconds_last_session=round(seconds, 1))
    if verbose:
        print(f"Finished in {seconds:.0f} s: {run_dir}", flush=True)
    return TrainResult(run_dir, run_state.state["epochs_completed"], run_state.state["best"],
                       metrics, seconds, resuming)


def _first_epoch_loss(state):
    """The mean training loss of the run's first epoch, once it has one."""
    history = state.get("history") or []
    loss = history[0].get("loss") if history else None
    return loss if isinstance(loss, float) else None


class _HistoryFiles(keras.callbacks.Callback):
    """Rewrites ``history.csv`` and ``curves.png`` from the run state after each epoch."""

    def __init__(self, run_dir, run_state):
        super().__init__()
        self.run_dir = run_dir
        self.run_state = run_state

    def on_epoch_end(self, epoch, logs=None):
        write_history(self.run_dir, self.run_state.state["history"])


def write_history(run_dir, history):
    if not history:
        return
    keys = ["epoch"] + sorted({k for row in history for k in row} - {"epoch"})
    lines = [",".join(keys)] + [
        ",".join("" if row.get(k) is None else f"{row[k]:.6g}" if isinstance(row.get(k), float)
                 else str(row[k]) for k in keys)
        for row in history
    ]
    atomic_write_text(os.path.join(run_dir, HISTORY_FILE), "\n".join(lines) + "\n")
    save_curves(os.path.join(run_dir, CURVES_FILE), history)


def load_checkpoint(path, compile=False):
    """``keras.models.load_model(path)`` of a run's checkpoint; errors name the file and the fix.

    Raises:
        RunFolderError: the file is missing, truncated, or cannot be loaded.
    """
    fix = ("Restore it, or pass fresh=True to start a new run folder beside this one (this "
           "one is kept).")
    if not os.path.isfile(path):
        raise RunFolderError(f"checkpoint {path} is missing, but the run folder's state.json "
                             f"names it. {fix}")
    if not zipfile.is_zipfile(path):
        raise RunFolderError(f"checkpoint {path} ({os.path.getsize(path)} bytes) is not a "
                             f"complete .keras file: it is truncated or damaged. {fix}")
    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as error:  # noqa: BLE001 - a damaged archive fails in many ways
        raise RunFolderError(f"checkpoint {path} cannot be loaded ({type(error).__name__}: "
                             f"{error}). {fix}") from error


def finish_run(run_dir, config, run_state, preprocessing, info, verbose=1):
    """Evaluate the best model, draw predictions, and export if asked; return metrics."""
    path = resolve_checkpoint(run_dir)  # best.keras, else the last checkpoint
    model = load_checkpoint(path)
    metrics = {}
    if config.eval.split:
        metrics = evaluate_split(model, config, preprocessing, config.eval.split, verbose=verbose)
        atomic_write_json(os.path.join(run_dir, METRICS_FILE), metrics)
        if verbose:
            print(f"{config.eval.split}: mean IoU {metrics['mean_iou']:.4f}, pixel accuracy "
                  f"{metrics['pixel_accuracy']:.4f}", flush=True)
    if config.output.sample_images:
        images, masks = _sample_batch(config, preprocessing, config.output.sample_images)
        if images:
            predictions = [predict_classes(model, image[None])[0] for image in images]
            save_prediction_grid(
                os.path.join(run_dir, PREDICTIONS_FILE),
                [denormalize(i, preprocessing) for i in images], masks, predictions,
                info.class_names, info.colors, info.ignore_label,
            )
    if config.export.enabled:
        export_dir = os.path.join(run_dir, EXPORT_DIR)
        export_model(model, preprocessing, export_metadata(model, preprocessing, path, config),
                     export_dir, overwrite=True, tflite=config.export.tflite,
                     tflite_size=config.data.crop_size)
        if verbose:
            print(f"Exported SavedModel to {export_dir}", flush=True)
    return metrics
