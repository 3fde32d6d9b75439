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

Read :func:`train` first: it is one run, top to bottom. What it builds from
the config once (model, optimizer, loss, strategy, preprocessing, ...) is a
:class:`TrainingSession`, whose methods follow in the order they run.
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
from fcn_tf.exporting import export_metadata, export_model
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
    AveragedWeights,
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


def train(config, *, fresh=False, verbose=1):
    """Train according to ``config`` (a :class:`~fcn_tf.config.run_config.Config`).

    Returns a :class:`TrainResult`. Raises :class:`TrainingDiverged` when the
    loss stops being finite (the last good checkpoint is kept).

    The run, in order: the checks that cost seconds, the run folder, the
    objects built once from the config (a :class:`TrainingSession`), the
    run's files, the callbacks, the epochs, and the end of the run.
    """
    start = time.time()
    backbone = setup.preflight(config)
    effective = config.to_dict()
    folder = _RunFolder(config, effective, fresh)
    with folder:  # an existing folder is locked now, before its state is read
        session = TrainingSession.build(config, folder, backbone, verbose)
        folder.create()  # a new folder is made and locked now, once every check has passed
        session.write_run_files(effective)
        watch = session.watch()
        session.fit(watch)
        return session.finish(watch.run_state, start)


class _RunFolder:
    """The run folder a session trains in, and its lock.

    :func:`~fcn_tf.runs.choose_run_dir` picks it: the latest unfinished run
    of this config, or a new folder. An existing folder is locked (and given
    its marker) when the ``with`` block is entered, before its state is
    read; a new one is made and locked by :meth:`create`. Leaving the block
    releases the lock.
    """

    def __init__(self, config, effective, fresh):
        parent = _worker_output_dir(config)
        try:
            self.run_dir, self.resuming = choose_run_dir(
                parent, config.output.name, effective, fresh, create=False)
        except (NotADirectoryError, PermissionError) as error:
            raise ConfigError(f"output.dir: {str(error).removeprefix('parent: ')}") from None
        self.new = not os.path.exists(self.run_dir)
        self._lock = None

    def __enter__(self):
        if not self.new:
            self._lock = RunLock(self.run_dir).acquire()
            try:
                create_run_dir(self.run_dir)  # a run folder from before the marker gets it now
            except BaseException:
                self.__exit__()
                raise
        return self

    def read_state(self):
        """The run's ``state.json``; ``{}`` for a new folder or a run without one yet."""
        return ({} if self.new else read_state(self.run_dir)) or {}

    def create(self):
        """Make a new run folder and lock it (an existing one is locked already)."""
        if self.new:
            create_run_dir(self.run_dir)
            self._lock = RunLock(self.run_dir).acquire()

    def __exit__(self, *exc_info):
        if self._lock is not None:
            self._lock.release()
            self._lock = None


@dataclasses.dataclass
class _Watch:
    """What ``fit`` is given besides the training batches."""

    validation: object  # the validation batches, or None without train.validation_split
    run_state: RunState
    nan_stop: StopOnNaN
    callbacks: list
    jit_compile: bool


@dataclasses.dataclass
class TrainingSession:
    """One training session: its run folder and what it builds from the config, once.

    :meth:`build` makes it; the methods after it are the run, in order.
    """

    config: object
    run_dir: str
    resuming: bool  # the folder holds an unfinished run of this config
    state: dict  # state.json as this session found it
    backbone: str
    precision: str  # the Keras policy that train.precision resolved to
    info: object  # the dataset's class names, colours and ignore label
    steps: int  # steps per epoch
    strategy: object
    loss: object
    model: object
    optimizer: object
    preprocessing: object
    verbose: int

    @classmethod
    def build(cls, config, folder, backbone, verbose):
        """Seed, precision, dataset facts, strategy, loss, then the model, new or resumed.

        Args:
            config: the run's config.
            folder: the :class:`_RunFolder` chosen for it.
            backbone: the model's backbone, as :func:`setup.preflight` returned it.
            verbose: Keras' ``verbose`` (0 quiet, 1 progress bars, 2 a line per epoch).
        """
        state = folder.read_state()
        keras.utils.set_random_seed(config.train.seed)
        precision = _set_precision(config.train.precision, verbose)
        info = dataset_info(config.data)
        steps = _steps_per_epoch(config, len(split_files(config.data, "train")))
        strategy = setup.build_strategy(config.train.distribute)
        with strategy.scope():
            loss = setup.build_loss_from_config(config, setup.class_weights(config))
            if folder.resuming and state.get("checkpoint"):
                model, preprocessing = _resume_model(folder.run_dir, state["checkpoint"])
                optimizer = model.optimizer
            else:
                model = setup.build_model_from_config(config)
                preprocessing = setup.initialise_weights(model, config, backbone)
                optimizer = setup.build_optimizer(config, steps)
                optimizer.build(model.trainable_variables)
        return cls(
            config=config, run_dir=folder.run_dir, resuming=folder.resuming, state=state,
            backbone=backbone, precision=precision, info=info, steps=steps, strategy=strategy,
            loss=loss, model=model, optimizer=optimizer, preprocessing=preprocessing,
            verbose=verbose,
        )

    @property
    def epochs_done(self):
        """Epochs completed before this session."""
        return int(self.state.get("epochs_completed", 0))

    def write_run_files(self, effective):
        """``config.json`` and ``preprocessing.json``, and the lines saying what the session does."""
        saved = read_config_dict(self.run_dir)
        changed = [] if saved is None else config_changes(saved, effective)
        if saved is None or changed:
            # choose_run_dir let only eval/export/output keys differ: they are the run's now.
            atomic_write_json(os.path.join(self.run_dir, CONFIG_FILE), effective)
        if not (self.resuming and self.state.get("checkpoint")):
            atomic_write_json(os.path.join(self.run_dir, PREPROCESSING_FILE),
                              self.preprocessing.to_dict())
        action = f"Resuming after epoch {self.epochs_done}" if self.resuming else "Starting"
        print(f"{action}: run folder {self.run_dir}", flush=True)
        if changed:
            print(f"Changed since the run started (taken from this config): {', '.join(changed)}",
                  flush=True)
        if self.epochs_done >= self.config.train.epochs:
            print(f"Training is complete ({self.epochs_done} epochs); finishing the run.",
                  flush=True)

    def watch(self):
        """The validation batches, the callbacks, and whether to train with XLA."""
        train = self.config.train
        val = None
        if train.validation_split:
            val = self._distributed(lambda ctx: build_dataset(
                self.config.data, train.validation_split, training=False,
                batch_size=train.batch_size, preprocessing=self.preprocessing, input_context=ctx,
            ))
        monitor = "val_mean_iou" if val is not None else "mean_iou"
        nan_stop = StopOnNaN(lambda: _first_epoch_loss(run_state.state), train.divergence_factor)
        run_state = RunState(self.run_dir, monitor=monitor, total_epochs=train.epochs,
                             diverged=lambda: nan_stop.failure is not None)
        run_state.state.setdefault("precision", self.precision)  # what "auto" became (kept on resume)
        jit_compile = self._jit_compile(run_state.state)
        # The average goes into the model before run_state writes the checkpoints.
        averaged = ([AveragedWeights(averaged_in_model=bool(run_state.state.get("checkpoint")))]
                    if train.ema is not None else [])
        callbacks = [LearningRateLogger(), nan_stop, *averaged, run_state,
                     _HistoryFiles(self.run_dir, run_state)] + self._tensorboard()
        return _Watch(val, run_state, nan_stop, callbacks, jit_compile)

    def _jit_compile(self, state):
        """``train.jit_compile`` as decided for the run: measured once, kept in ``state``."""
        if "jit_compile" not in state:
            with self.strategy.scope():
                _, state["jit_compile"] = choose_jit_compile(
                    self.config, self.model, lambda: setup.build_optimizer(self.config, self.steps),
                    self.loss, self.precision)
        if self.verbose and self.config.train.jit_compile == "auto":
            print(f"train.jit_compile {state['jit_compile']['reason']}", flush=True)
        return state["jit_compile"]["jit_compile"]

    def _tensorboard(self):
        """The TensorBoard callbacks that ``output`` asks for: logs and prediction pictures."""
        output = self.config.output
        if not output.tensorboard:
            return []
        log_dir = os.path.join(self.run_dir, TENSORBOARD_DIR)
        callbacks = [keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False)]
        if output.sample_images:
            images, masks = _sample_batch(self.config, self.preprocessing,
                                          min(2, output.sample_images))
            callbacks.append(PredictionImages(log_dir, images, masks, self.info.colors,
                                              self.info.ignore_label, self.preprocessing))
        return callbacks

    def fit(self, watch):
        """The epochs left: first those with the backbone frozen (``train.freeze_backbone_epochs``).

        Raises:
            TrainingDiverged: the divergence guard stopped an epoch.
        """
        freeze, epochs = self.config.train.freeze_backbone_epochs, self.config.train.epochs
        done = self.epochs_done
        phases = []
        if done < min(freeze, epochs):
            phases.append((done, min(freeze, epochs), False))
        if max(done, freeze) < epochs:
            phases.append((max(done, freeze), epochs, True))
        for first, last, backbone_trainable in phases:
            self._fit_epochs(first, last, backbone_trainable, watch)
            if watch.nan_stop.failure:
                raise TrainingDiverged(watch.nan_stop.message(
                    self.run_dir, checkpoint_kept=bool(watch.run_state.state.get("checkpoint"))))

    def _fit_epochs(self, first, last, backbone_trainable, watch):
        """``model.fit`` over epochs ``first .. last - 1``, compiled for that phase."""
        train, model = self.config.train, self.model
        with self.strategy.scope():
            if train.freeze_backbone_epochs:
                for layer in backbone_layers(model, self.backbone):
                    layer.trainable = backbone_trainable
            model.compile(optimizer=self.optimizer, loss=self.loss,
                          metrics=setup.build_metrics(self.config), jit_compile=watch.jit_compile)
        data = self._distributed(lambda ctx: self._epoch_batches(first, last, ctx))
        multi_worker = train.distribute == "multi_worker"
        with self.strategy.scope(), (patched_fit() if multi_worker else contextlib.nullcontext()):
            if multi_worker:
                # Keras 3.15's symbolic build reduces a sample (x, y) batch with
                # strategy.reduce, which MultiWorkerMirroredStrategy rejects for a
                # nested structure. Without a captured strategy Keras defers the
                # build to the first traced step and takes the strategy from scope.
                model._distribute_strategy = None
            model.fit(
                data, epochs=last, initial_epoch=first, steps_per_epoch=self.steps,
                validation_data=watch.validation, callbacks=watch.callbacks,
                verbose=self.verbose, shuffle=False,
            )

    def _epoch_batches(self, first, last, input_context=None):
        """Epochs ``first .. last - 1`` of training batches, one after another.

        Epoch ``e`` is the training pipeline seeded with ``data.seed + e``,
        repeated if needed and cut to ``steps`` global steps. Under
        ``tf.distribute`` one pipeline feeds several replicas, one per-replica
        batch each per step, so it yields ``steps * replicas_per_pipeline`` batches.
        """
        steps = self.steps
        if input_context is not None:
            steps *= input_context.num_replicas_in_sync // input_context.num_input_pipelines
        config = self.config
        return build_training_epochs(
            config.data, "train", batch_size=config.train.batch_size,
            preprocessing=self.preprocessing,
            seeds=[config.data.seed + epoch for epoch in range(first, last)],
            steps=steps, input_context=input_context,
        )

    def _distributed(self, make):
        """``make(input_context)`` per input pipeline of the session's strategy."""
        if self.strategy.num_replicas_in_sync == 1:
            return make(None)
        return self.strategy.distribute_datasets_from_function(make)

    def finish(self, run_state, start):
        """The end of the run (:meth:`evaluate_and_export`), then ``state.json`` marked finished.

        Raises:
            RunEndFailed: the end failed; the trained model is kept and the
                same command does the end again.
        """
        try:
            metrics = self.evaluate_and_export()
        except RunFolderError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure here strands a trained model
            raise RunEndFailed(
                f"training finished ({run_state.state['epochs_completed']} epochs, checkpoints "
                f"kept in {self.run_dir}) but the end of the run failed: "
                f"{type(error).__name__}: {error} Fix the cause and run the same command "
                "again: it skips the training and does the end again (the eval, export and "
                "output sections may be changed for it)."
            ) from error
        seconds = time.time() - start
        run_state.mark_finished(seconds_last_session=round(seconds, 1))
        if self.verbose:
            print(f"Finished in {seconds:.0f} s: {self.run_dir}", flush=True)
        return TrainResult(self.run_dir, run_state.state["epochs_completed"],
                           run_state.state["best"], metrics, seconds, self.resuming)

    def evaluate_and_export(self):
        """Evaluate the best model, draw predictions, and export if asked; return the metrics."""
        config, run_dir, preprocessing = self.config, self.run_dir, self.preprocessing
        path = resolve_checkpoint(run_dir)  # best.keras, else the last checkpoint
        model = load_checkpoint(path)
        metrics = {}
        if config.eval.split:
            metrics = evaluate_split(model, config, preprocessing, config.eval.split,
                                     verbose=self.verbose)
            atomic_write_json(os.path.join(run_dir, METRICS_FILE), metrics)
            if self.verbose:
                print(f"{config.eval.split}: mean IoU {metrics['mean_iou']:.4f}, pixel accuracy "
                      f"{metrics['pixel_accuracy']:.4f}", flush=True)
        if config.output.sample_images:
            images, masks = _sample_batch(config, preprocessing, config.output.sample_images)
            if images:
                predictions = [predict_classes(model, image[None])[0] for image in images]
                save_prediction_grid(
                    os.path.join(run_dir, PREDICTIONS_FILE),
                    [denormalize(i, preprocessing) for i in images], masks, predictions,
                    self.info.class_names, self.info.colors, self.info.ignore_label,
                )
        if config.export.enabled:
            export_dir = os.path.join(run_dir, EXPORT_DIR)
            export_model(model, preprocessing,
                         export_metadata(model, preprocessing, path, config), export_dir,
                         overwrite=True, tflite=config.export.tflite,
                         tflite_size=config.data.crop_size)
            if self.verbose:
                print(f"Exported SavedModel to {export_dir}", flush=True)
        return metrics


def _resume_model(run_dir, checkpoint):
    """The run's ``checkpoint`` (compiled, with its optimizer) and the run's preprocessing."""
    model = load_checkpoint(os.path.join(run_dir, checkpoint), compile=True)
    preprocessing = read_preprocessing(run_dir)
    if preprocessing is None:
        raise RunFolderError(
            f"{os.path.join(run_dir, PREPROCESSING_FILE)} is missing; the run's "
            "checkpoint cannot be resumed without its normalisation. Restore it, or "
            "pass fresh=True to start a new run folder beside this one."
        )
    return model, preprocessing


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
    """``train.steps_per_epoch``, or as many full batches as the training split holds."""
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
    """Set Keras' global policy for ``train.precision``; return the policy's name."""
    policy, reason = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    if verbose and precision != policy:
        print(f"train.precision {precision}: {policy} ({reason})", flush=True)
    return policy


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
    """``history.csv`` (one row per epoch, floats to 6 digits) and ``curves.png`` of ``history``."""
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
