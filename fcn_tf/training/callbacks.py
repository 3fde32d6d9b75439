"""Keras callbacks of a training run: checkpoints, divergence, logging, images."""

import math
import os

import keras
import numpy as np
import tensorflow as tf

from fcn_tf.runs.files import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    STATE_FILE,
    atomic_save_model,
    atomic_write_json,
)
from fcn_tf.runs.folder import read_state
from fcn_tf.visualize import colorize, denormalize, predict_classes


class TrainingDiverged(RuntimeError):
    """The loss became NaN, infinite, or far larger than in the first epoch."""


class RunState(keras.callbacks.Callback):
    """Writes ``last`` and ``best`` checkpoints and ``state.json`` after every epoch.

    The last checkpoint (model and optimizer, so the schedule and moments
    resume) is written under a new name, then ``state.json`` is switched to
    it atomically, then the previous one is deleted. The best checkpoint (by
    ``monitor``, higher is better) is replaced atomically. An epoch whose
    loss is not finite, or in which ``diverged()`` became true, writes
    nothing, so the last good checkpoint stays.
    """

    def __init__(self, run_dir, monitor="val_mean_iou", total_epochs=None,
                 diverged=lambda: False):
        super().__init__()
        self.diverged = diverged
        self.run_dir = run_dir
        self.monitor = monitor
        self.total_epochs = total_epochs
        os.makedirs(os.path.join(run_dir, CHECKPOINT_DIR), exist_ok=True)
        self.state = read_state(run_dir) or {
            "epochs_completed": 0, "checkpoint": None, "best": None,
            "best_epoch": None, "monitor": monitor, "finished": False, "history": [],
        }

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if not math.isfinite(float(logs.get("loss", float("nan")))) or self.diverged():
            return
        ckpt_dir = os.path.join(self.run_dir, CHECKPOINT_DIR)
        name = f"epoch{epoch + 1:04d}.keras"
        atomic_save_model(self.model, os.path.join(ckpt_dir, name))
        score = logs.get(self.monitor)
        improved = score is not None and (
            self.state["best"] is None or float(score) > self.state["best"]
        )
        if improved:
            atomic_save_model(self.model, os.path.join(self.run_dir, BEST_CHECKPOINT))
            self.state["best"] = float(score)
            self.state["best_epoch"] = epoch + 1
        previous = self.state.get("checkpoint")
        row = {"epoch": epoch + 1, **{k: _to_float(v) for k, v in logs.items()}}
        self.state["history"] = [h for h in self.state["history"] if h["epoch"] <= epoch] + [row]
        self.state.update(epochs_completed=epoch + 1, checkpoint=f"{CHECKPOINT_DIR}/{name}")
        atomic_write_json(os.path.join(self.run_dir, STATE_FILE), self.state)
        if previous and previous != self.state["checkpoint"]:
            old = os.path.join(self.run_dir, previous)
            if os.path.exists(old):
                os.remove(old)

    def mark_finished(self, **extra):
        self.state.update(finished=True, **extra)
        atomic_write_json(os.path.join(self.run_dir, STATE_FILE), self.state)


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Puts the optimizer's moving average of the weights (``train.ema``) in the model.

    Validation sees the averaged weights, and at the end of every epoch they
    are swapped in before :class:`RunState` (which must come after this
    callback) writes the checkpoints, so ``best.keras``, the last checkpoint
    and the final model all hold the average; the training weights travel in
    the optimizer's average slots and are swapped back at the next epoch's
    start. A run resumed from such a checkpoint starts with the average in
    the model (``averaged_in_model=True``) and swaps once before training.
    Normalisation statistics (not trainable) are the training weights' own.
    """

    def __init__(self, averaged_in_model=False):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = averaged_in_model


def _to_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


class StopOnNaN(keras.callbacks.Callback):
    """Stops training when the loss diverges: NaN, infinite, or ``factor`` x the first epoch's.

    During the first epoch (before it has a mean) the first step's loss is
    the reference.

    Args:
        reference: a callable giving the first epoch's mean loss, or ``None``
            while the first epoch runs.
        factor: the largest allowed ratio of the running loss to the
            reference; ``None`` checks only NaN and infinity.
    """

    def __init__(self, reference=lambda: None, factor=100.0):
        super().__init__()
        self.reference, self.factor = reference, factor
        self.epoch, self.failure = 0, None
        self.first_step_loss, self.reference_is_first_step = None, False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if self.epoch == 0 and batch == 0 and math.isfinite(loss):
            self.first_step_loss = loss
        reference = self.reference() if self.factor else None
        self.reference_is_first_step = reference is None
        if reference is None and self.factor and self.epoch == 0:
            reference = self.first_step_loss
        too_large = (reference is not None and math.isfinite(reference) and reference > 0
                     and loss > self.factor * reference)
        if not math.isfinite(loss) or too_large:
            self.failure = (self.epoch + 1, batch + 1, loss, reference if too_large else None)
            self.model.stop_training = True

    def message(self, run_dir, checkpoint_kept):
        epoch, step, value, reference = self.failure
        what = (f"the loss became {value}" if reference is None else
                f"the loss reached {value:.4g}, more than {self.factor:g}x the first "
                f"{'step' if self.reference_is_first_step else 'epoch'}'s {reference:.4g} "
                "(train.divergence_factor)")
        kept = (f"The last good checkpoint is kept in {run_dir}." if checkpoint_kept else
                f"No checkpoint was written yet (the run folder {run_dir} has none).")
        return (
            f"Training diverged: {what} at epoch {epoch}, step {step}. {kept} Try a lower "
            "train.learning_rate, gradient clipping (train.global_clipnorm: 1.0), "
            "train.warmup_epochs, or precision float32; check the data with "
            "`python -m fcn_tf.data verify CONFIG`."
        )


class LearningRateLogger(keras.callbacks.Callback):
    """Adds ``learning_rate`` to the epoch logs (for history.csv and TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class PredictionImages(keras.callbacks.Callback):
    """Writes image | ground truth | prediction strips to TensorBoard each epoch."""

    def __init__(self, log_dir, images, masks, colors, ignore_label, preprocessing):
        super().__init__()
        self.log_dir, self.preprocessing = log_dir, preprocessing
        self.images, self.masks = images, masks
        self.colors, self.ignore_label = colors, ignore_label
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "images"))
        predicted = predict_classes(self.model, self.images)
        rows = []
        for image, mask, pred in zip(self.images, self.masks, predicted):
            picture = denormalize(image, self.preprocessing)
            rows.append(np.concatenate([
                picture, colorize(mask, self.colors, self.ignore_label),
                colorize(pred, self.colors, self.ignore_label),
            ], axis=1))
        with self._writer.as_default():
            tf.summary.image("image_truth_prediction", np.stack(rows), step=epoch, max_outputs=len(rows))
        self._writer.flush()
