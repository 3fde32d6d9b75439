"""How far an export's files are from the Keras model they came from, on real images.

For every file of an export folder (the SavedModel, each LiteRT and ONNX
file) :func:`check_export` runs the same images of a dataset split through
it and through the source checkpoint, one image at a time, each runtime in
turn (so machine load falls on all alike), and reports:

- ``pixels_changed``: the share of pixels whose class differs from the
  Keras model's computed in float32 (the reference: the weights as trained,
  without rounding); a checkpoint trained in ``mixed_bfloat16`` also gets a
  row of its own in that precision, which is what ``predict`` runs;
- ``max_probability_difference``: the largest absolute difference of any
  class probability;
- ``mean_iou`` and ``pixel_accuracy`` on the split's labels (ignore label
  excluded), next to the checkpoint's own;
- ``images_per_second``: images over the seconds spent in that runtime's
  calls (the first image's call, which builds kernels, is not counted).

A file that changes more than ``max_changed`` of the pixels is flagged.

Example:
    >>> rows = check_export("models/seg/1", "runs/default", config, "val")  # doctest: +SKIP
    >>> print(format_fidelity(rows))                                        # doctest: +SKIP
"""

import dataclasses
import os
import time

import numpy as np
import tensorflow as tf

from fcn_tf.data import build_dataset
from fcn_tf.inference.loading import load_for_inference, read_export_metadata
from fcn_tf.metrics import confusion_matrix, scores_from_confusion
from fcn_tf.outputs import logits_to_classes, logits_to_probabilities
from fcn_tf.precision import model_precision, with_precision
from fcn_tf.preprocessing import Preprocessing, rgb_to_luma
from fcn_tf.runs import is_saved_model
from fcn_tf.runtimes import load_artifact
from fcn_tf.signatures import SIGNATURE_IMAGES

FIDELITY_FILE = "fidelity.json"
# The default share of pixels an exported file may change before it is flagged.
MAX_CHANGED = 0.01


def _keras_runners(checkpoint):
    """``[(name, precision, path, run)]``: the checkpoint in float32 (the reference), then
    in its training precision when that is another (what ``predict`` runs)."""
    loaded = load_for_inference(checkpoint)
    gray = loaded.info["image_channels"] == 1
    trained = model_precision(loaded.keras_model)

    def runner(model):
        call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

        def run(rgb):
            pixels = rgb_to_luma(rgb) if gray else rgb
            logits = np.asarray(call(loaded.preprocessing.apply(pixels)), np.float32)
            return {"class_ids": logits_to_classes(logits),
                    "probabilities": logits_to_probabilities(logits)}

        return run

    runners = [("keras", "float32", loaded.path,
                runner(with_precision(loaded.keras_model, "float32")))]
    if trained != "float32":
        runners.append((f"keras {trained}", trained, loaded.path, runner(loaded.keras_model)))
    return runners


def _saved_model_runner(export_dir):
    signature = tf.saved_model.load(export_dir).signatures[SIGNATURE_IMAGES]

    def run(rgb):
        return {k: v.numpy() for k, v in signature(images=tf.constant(rgb)).items()}

    return run


def raw_rgb_batches(config, split):
    """``(image, mask)`` batches of one image of ``split`` as raw RGB pixels (what an export takes).

    The evaluation pipeline with an identity normalisation: images in [0, 255]
    as float32, padded like every evaluation batch (``data.eval_pad_multiple``,
    with 0) and masks with the ignore label.
    """
    identity = Preprocessing(mean=(0.0,) * 3, std=(1.0,) * 3)
    data = dataclasses.replace(config.data, image_channels=3)
    return build_dataset(data, split, training=False, batch_size=1, preprocessing=identity)


def runtimes_of(export_dir):
    """``[(name, runtime, precision, file or folder)]`` of everything an export folder holds."""
    _, metadata = read_export_metadata(export_dir, f"export_dir {export_dir}")
    rows = [("saved_model", "tensorflow", metadata.get("precision", "float32"), export_dir)]
    for name, entry in sorted(metadata.get("artifacts", {}).items()):
        rows.append((name, entry["runtime"], entry["precision"], os.path.join(export_dir, name)))
    return rows


@dataclasses.dataclass
class _Tally:
    """What one runtime gave over the images so far, against the reference (the first runtime)."""

    num_classes: int
    confusion: np.ndarray = None
    changed: int = 0
    pixels: int = 0
    max_difference: float = 0.0
    seconds: float = 0.0
    timed: int = 0

    def __post_init__(self):
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def add(self, out, reference, mask, ignore_label):
        """Count one image's outputs ``out`` against ``reference`` and the labels ``mask``."""
        classes, probabilities = out
        self.changed += int(np.count_nonzero(classes != reference[0]))
        self.pixels += classes.size
        self.max_difference = max(self.max_difference,
                                  float(np.abs(probabilities - reference[1]).max()))
        self.confusion += confusion_matrix(mask, classes, self.num_classes, ignore_label)

    def row(self, name, runtime, precision, path, images, class_names, max_changed):
        """The fidelity row of this runtime's file (see :func:`check_export`)."""
        scores = scores_from_confusion(self.confusion, list(class_names))
        changed = self.changed / max(self.pixels, 1)
        return {
            "name": name, "runtime": runtime, "precision": precision,
            "bytes": _size(path), "images": images,
            "pixels_changed": changed, "max_probability_difference": self.max_difference,
            "mean_iou": scores["mean_iou"], "pixel_accuracy": scores["pixel_accuracy"],
            "images_per_second": self.timed / self.seconds if self.seconds else None,
            "flagged": changed > max_changed,
        }


def check_export(export_dir, checkpoint, config, split, max_images=None,
                 max_changed=MAX_CHANGED):
    """Fidelity rows of every file in ``export_dir`` against ``checkpoint`` on ``split``.

    Args:
        export_dir: a folder written by :mod:`fcn_tf.exporting` (``python -m fcn_tf.export``).
        checkpoint: the ``.keras`` file or run folder it was exported from.
        config: the run :class:`~fcn_tf.config.run_config.Config` (its data
            section names the split's files, classes and ignore label).
        split: the split to score, e.g. ``"val"``.
        max_images: score only the first this many images (file order).
        max_changed: the share of changed pixels above which a row is flagged.

    Returns:
        A list of dicts, the Keras model in float32 first (the reference),
        the Keras model in its training precision if that differs, then the
        SavedModel and each exported file.
    """
    _check_arguments(export_dir, max_images, max_changed)
    names, runs = _runners(export_dir, checkpoint)
    dataset = raw_rgb_batches(config, split)
    if max_images:
        dataset = dataset.take(max_images)
    tallies, count = _tally_split(runs, dataset, config.data.num_classes,
                                  config.data.ignore_label)
    if count == 0:
        raise ValueError(f"split {split!r}: no images to check the export on.")
    return [tally.row(*name, count, config.data.class_names, max_changed)
            for name, tally in zip(names, tallies)]


def _check_arguments(export_dir, max_images, max_changed):
    if not 0.0 <= max_changed <= 1.0:
        raise ValueError(f"max_changed: expected a share in [0, 1], received {max_changed}.")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images: expected a positive count, received {max_images}.")
    if not is_saved_model(export_dir):
        raise FileNotFoundError(f"export_dir {export_dir}: not an export folder (no "
                                "saved_model.pb); write it first with python -m fcn_tf.export.")


def _runners(export_dir, checkpoint):
    """``(names, runs)``: ``[(name, runtime, precision, path)]`` and a runner of uint8 RGB for each.

    The Keras model first (float32, the reference; then its training
    precision if that differs), the SavedModel, then each exported file.
    """
    keras_runners = _keras_runners(checkpoint)
    exported = runtimes_of(export_dir)
    names = [(name, "keras", precision, path) for name, precision, path, _ in keras_runners]
    runs = [run for *_, run in keras_runners] + [_saved_model_runner(export_dir)]
    runs += [load_artifact(path) for _, _, _, path in exported[1:]]
    return names + exported, runs


def _tally_split(runs, dataset, num_classes, ignore_label):
    """``(tallies, images)``: each runner's :class:`_Tally` over ``dataset``, image by image.

    Every image goes through each runner in turn; the first image's calls
    (which build kernels) are not timed.
    """
    tallies = [_Tally(num_classes) for _ in runs]
    count = 0
    for index, (image, mask) in enumerate(dataset):
        rgb = np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8)
        mask = mask.numpy()
        reference = None
        for run, tally in zip(runs, tallies):
            start = time.perf_counter()
            out = run(rgb)
            if index > 0:
                tally.seconds += time.perf_counter() - start
                tally.timed += 1
            out = (np.asarray(out["class_ids"]), np.asarray(out["probabilities"], np.float32))
            if reference is None:
                reference = out
            tally.add(out, reference, mask, ignore_label)
        count += 1
    return tallies, count


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files if not f.endswith((".tflite", ".onnx")))


def format_fidelity(rows, max_changed=MAX_CHANGED):
    """The fidelity rows as a text table, then one line per flagged file."""
    header = (f"{'file':<26} {'runtime':<10} {'precision':<15} {'MiB':>7} {'changed %':>9} "
              f"{'max |dp|':>9} {'mean IoU':>8} {'pix acc':>7} {'img/s':>7}")
    lines = [header, "-" * len(header)]
    for row in rows:
        speed = f"{row['images_per_second']:7.2f}" if row["images_per_second"] else "    n/a"
        lines.append(
            f"{row['name']:<26} {row['runtime']:<10} {row['precision']:<15} "
            f"{row['bytes'] / 2**20:7.2f} {100 * row['pixels_changed']:9.3f} "
            f"{row['max_probability_difference']:9.2e} {row['mean_iou']:8.4f} "
            f"{row['pixel_accuracy']:7.4f} {speed}")
    for row in rows:
        if row["flagged"]:
            lines.append(f"WARNING: {row['name']} changes {100 * row['pixels_changed']:.2f}% of "
                         f"the pixels' classes (more than {100 * max_changed:.2f}%): check its "
                         "masks before deploying it, or use a higher precision.")
    return "\n".join(lines)
