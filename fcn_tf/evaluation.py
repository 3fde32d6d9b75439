"""Scoring a model on a dataset split from one confusion matrix.

Labels are scored at their full resolution: evaluation batches are padded
with the ignore label, never resized. Predictions go through
:func:`fcn_tf.inference.predict_logits`, with test-time augmentation and
sliding windows (:class:`fcn_tf.inference.InferenceOptions`).
:func:`evaluate_checkpoint` scores a checkpoint or an export and writes the
report; ``python -m fcn_tf.evaluate`` is its command line.

Example:
    >>> import numpy as np
    >>> cm = np.array([[3, 1], [0, 4]])
    >>> round(scores_from_confusion(cm)["pixel_accuracy"], 3)
    0.875
"""

import json
import os

import keras
import numpy as np

from fcn_tf.data import build_dataset
from fcn_tf.inference import InferenceModel, InferenceOptions, load_for_inference, predict_logits
from fcn_tf.metrics import confusion_matrix, scores_from_confusion
from fcn_tf.outputs import logits_to_classes
from fcn_tf.runs import find_run_dir
from fcn_tf.runs.files import METRICS_FILE, atomic_write_json, atomic_write_text, eval_dir_name
from fcn_tf.visualize import new_figure

__all__ = [
    "confusion_over_dataset",
    "evaluate_checkpoint",
    "evaluate_split",
    "format_scores",
    "load_for_evaluation",
    "logits_function",
    "logits_to_classes",
    "save_confusion_heatmap",
    "scores_from_confusion",
    "write_evaluation",
]


def logits_function(model):
    """``fn(images) -> float32 logits`` on normalised images, for :func:`predict_logits`.

    ``model`` is a Keras model (called with ``training=False``) or an
    :class:`~fcn_tf.inference.InferenceModel` (its
    :meth:`~fcn_tf.inference.InferenceModel.normalised_logits`, which also
    serves exported files).
    """
    if isinstance(model, InferenceModel):
        return model.normalised_logits
    return lambda images: np.asarray(model(images, training=False), np.float32)


def confusion_over_dataset(model, dataset, num_classes, ignore_label, options=None, verbose=0):
    """Accumulate the confusion matrix of ``model`` over ``(image, mask)`` batches.

    Each batch goes through :func:`predict_logits` with ``options``
    (:class:`InferenceOptions`; default: the whole image once). With
    ``verbose`` 1 a progress bar counts the batches of the split; with 2
    (output to a file or pipe) one line is written when it is done.
    """
    fn = logits_function(model)
    total = np.zeros((num_classes, num_classes), np.int64)
    progress = None
    if verbose:
        cardinality = int(dataset.cardinality())
        progress = keras.utils.Progbar(cardinality if cardinality > 0 else None,
                                       verbose=verbose, unit_name="batch")
    for index, (images, masks) in enumerate(dataset):
        predicted = logits_to_classes(predict_logits(fn, images, options))
        total += confusion_matrix(masks.numpy(), predicted, num_classes, ignore_label)
        if progress is not None:
            progress.update(index + 1)
    return total


def evaluate_split(model, config, preprocessing, split, verbose=0, options=None, batch_size=None):
    """The FCN paper's metrics, per-class scores and the confusion matrix of ``split``.

    Args:
        model: a Keras model on normalised images, or an
            :class:`~fcn_tf.inference.InferenceModel` (a checkpoint or an export).
        config: the run :class:`~fcn_tf.config.run_config.Config`.
        preprocessing: the normalisation the model was trained with.
        split: split name.
        verbose: 1 shows a progress bar over the split, 2 one line at its end.
        options: :class:`~fcn_tf.inference.InferenceOptions`; default: the
            config's ``eval`` section (scales, flip, window, overlap).
        batch_size: images per batch; default ``config.train.batch_size``
            (1 when sliding windows are used, whose batches are windows).
    """
    if options is None:
        options = InferenceOptions.from_eval_config(config.eval)
    if batch_size is None:
        batch_size = 1 if options.window else config.train.batch_size
    dataset = build_dataset(config.data, split, training=False,
                            batch_size=batch_size, preprocessing=preprocessing)
    cm = confusion_over_dataset(model, dataset, config.data.num_classes,
                                config.data.ignore_label, options=options, verbose=verbose)
    scores = scores_from_confusion(cm, list(config.data.class_names))
    scores["split"] = split
    scores["confusion_matrix"] = cm.tolist()
    return scores


def load_for_evaluation(checkpoint, config):
    """``(model, preprocessing)``: ``checkpoint`` loaded to be scored on ``config``'s data.

    ``checkpoint`` is a ``.keras`` file, a run folder, an export folder or an
    exported ``.tflite`` / ``.onnx`` file (:func:`~fcn_tf.inference.load_for_inference`,
    described by ``config``); ``preprocessing`` is the normalisation the
    evaluation batches get.

    Raises:
        ValueError: the model predicts another number of classes than
            ``config.data.num_classes``, or takes images of other channels.
    """
    loaded = load_for_inference(checkpoint, num_classes=config.data.num_classes, config=config)
    if loaded.info["image_channels"] != config.data.image_channels:
        raise ValueError(
            f"checkpoint {checkpoint} takes {loaded.info['image_channels']}-channel images, "
            f"the config's data.image_channels is {config.data.image_channels}.")
    return loaded, loaded.preprocessing.for_channels(config.data.image_channels)


def _default_out_dir(checkpoint, path, split, exported):
    """RUN/eval-SPLIT for a checkpoint; EXPORT/eval-SPLIT-FILE for an export (never the run's)."""
    if exported:
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        stem = "saved_model" if os.path.isdir(path) else os.path.basename(path).replace(".", "_")
        return os.path.join(folder, f"{eval_dir_name(split)}-{stem}")
    run_dir = find_run_dir(checkpoint) or os.path.dirname(os.path.abspath(path))
    return os.path.join(run_dir, eval_dir_name(split))


def evaluate_checkpoint(config, checkpoint, split, *, scales=None, flip=None, window=None,
                        overlap=None, out_dir=None, verbose=1):
    """Evaluate ``checkpoint`` on ``split``; write the report; return ``(scores, out_dir)``.

    ``checkpoint`` is a ``.keras`` file, a run folder, an export folder or an
    exported ``.tflite`` / ``.onnx`` file; the report goes to the run folder
    (or, for an export, next to it) unless ``out_dir`` is given. ``scales``,
    ``flip``, ``window`` and ``overlap`` override the config's ``eval``
    section (``window=()``: no windows).

    Raises:
        ValueError: the checkpoint predicts another number of classes than
            ``config.data.num_classes`` (nothing is written).
    """
    model, preprocessing = load_for_evaluation(checkpoint, config)
    exported = model.kind != "keras"
    path = os.path.abspath(model.path) if exported else model.path
    if verbose:
        print(f"Checkpoint {path}\nNormalisation {preprocessing.to_dict()} from "
              f"{model.preprocessing_source}", flush=True)
    options = InferenceOptions.from_eval_config(
        config.eval, scales=tuple(scales) if scales else None, flip=flip, overlap=overlap)
    if window is not None:
        options = InferenceOptions(**{**options.to_dict(), "window": window or None})
    scores = evaluate_split(model, config, preprocessing, split, verbose=verbose, options=options)
    if out_dir is None:
        out_dir = _default_out_dir(checkpoint, path, split, exported)
    write_evaluation(out_dir, scores, {"checkpoint": os.path.abspath(path),
                                       "normalization": preprocessing.to_dict(),
                                       "normalization_source": model.preprocessing_source,
                                       "inference": options.to_dict()})
    return scores, out_dir


_METRICS = (("pixel_accuracy", "pixel accuracy"), ("mean_accuracy", "mean accuracy"),
            ("mean_iou", "mean IU"), ("frequency_weighted_iou", "frequency-weighted IU"))


def format_scores(scores):
    """The four metrics and the per-class table as text."""
    def pct(value):
        return "   n/a" if value is None or np.isnan(value) else f"{100 * value:6.2f}"

    lines = [f"{label:<22} {pct(scores[key])} %" for key, label in _METRICS]
    width = max([5] + [len(row["class"]) for row in scores["per_class"]])
    lines += ["", f"{'class':<{width}}  {'IoU %':>6}  {'acc %':>6}  {'Dice %':>6}  {'pixels':>10}",
              "-" * (width + 36)]
    for row in scores["per_class"]:
        lines.append(f"{row['class']:<{width}}  {pct(row['iou'])}  {pct(row['accuracy'])}  "
                     f"{pct(row.get('dice'))}  {row['pixels']:>10}")
    return "\n".join(lines)


def save_confusion_heatmap(path, confusion, class_names):
    """Save the row-normalised confusion matrix (each true class sums to 1) as a PNG."""
    cm = np.asarray(confusion, np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig = new_figure((size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised)")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if normalised[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_evaluation(out_dir, scores, extra=None):
    """Write metrics.json, confusion_matrix.json, confusion_matrix.png and scores.txt."""
    os.makedirs(out_dir, exist_ok=True)
    names = [row["class"] for row in scores["per_class"]]
    cm = scores["confusion_matrix"]
    atomic_write_json(os.path.join(out_dir, METRICS_FILE),
                      {**{k: v for k, v in scores.items() if k != "confusion_matrix"},
                       **(extra or {})})
    atomic_write_json(os.path.join(out_dir, "confusion_matrix.json"),
                      {"class_names": names, "rows": "true class", "columns": "predicted class",
                       "matrix": cm})
    save_confusion_heatmap(os.path.join(out_dir, "confusion_matrix.png"), cm, names)
    atomic_write_text(os.path.join(out_dir, "scores.txt"), format_scores(scores) + "\n")
    return out_dir


def load_scores(out_dir):
    with open(os.path.join(out_dir, METRICS_FILE), encoding="utf-8") as f:
        return json.load(f)
