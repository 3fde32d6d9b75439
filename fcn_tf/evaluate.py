"""``python -m fcn_tf.evaluate CONFIG --checkpoint PATH [--split val]``.

Scores a checkpoint on a dataset split with the FCN paper's four metrics
(pixel accuracy, mean accuracy, mean IU, frequency-weighted IU) from one
dataset-level confusion matrix at the labels' full resolution, the ignore
label excluded. Prints the metrics and a per-class IoU / accuracy / Dice table and
writes, to ``RUN/eval-SPLIT/`` (the checkpoint's run folder, or ``--out``):
``metrics.json``, ``confusion_matrix.json``, ``confusion_matrix.png``
(row-normalised heat map) and ``scores.txt``.

Test-time augmentation (``--scales``, ``--flip``) and sliding windows
(``--window``, ``--overlap``) default to the config's ``eval`` section.

``--checkpoint`` may also be what was deployed: an export folder (its
SavedModel) or an exported ``.tflite`` / ``.onnx`` file, read through its
runtime on raw pixels, so the artifact itself is scored with the same metrics.
"""

import argparse
import os
import sys

import keras
import numpy as np

from fcn_tf.config import ConfigError
from fcn_tf.config.run_config import load_config
from fcn_tf.data import DatasetError
from fcn_tf.evaluation import evaluate_split, format_scores, write_evaluation
from fcn_tf.inference import InferenceOptions
from fcn_tf.runs import (
    check_class_count,
    find_run_dir,
    is_saved_model,
    load_for_inference,
    resolve_checkpoint,
    resolve_preprocessing,
)
from fcn_tf.runtimes import artifact_runtime
from fcn_tf.runs.files import eval_dir_name
from fcn_tf.utils.cli import progress_verbosity, report_error


def parse_window(values, config):
    """``--window``: ``H W``, one size for both, ``crop`` (the training crop) or ``none``."""
    if values is None:
        return None
    if len(values) == 1 and values[0] == "crop":
        return tuple(config.data.crop_size)
    if len(values) == 1 and values[0] == "none":
        return ()
    try:
        sizes = [int(v) for v in values]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise ValueError(f"--window: expected H W, one size, 'crop' or 'none', received "
                         f"{' '.join(values)}.")
    return tuple(sizes * 2 if len(sizes) == 1 else sizes)


class _PixelModel:
    """An exported model called like a Keras model on normalised batches.

    The evaluation pipeline normalises and pads with 0, the mean pixel; the
    exported model takes raw pixels (normalisation inside), so the batch is
    turned back into pixels first: the padding becomes the mean pixel, as the
    checkpoint sees it, and the split is scored the same way for both.
    """

    def __init__(self, loaded):
        self.loaded = loaded
        self.mean = np.float32(loaded.preprocessing.mean)
        self.std = np.float32(loaded.preprocessing.std)

    def __call__(self, normalised, training=False):
        pixels = np.asarray(normalised, np.float32) * self.std + self.mean
        return self.loaded.logits(pixels)


def _load_model(checkpoint, config):
    """``(model, preprocessing, source, path)``: a Keras checkpoint, or an export on raw pixels."""
    if artifact_runtime(checkpoint) is not None or is_saved_model(checkpoint):
        loaded = load_for_inference(checkpoint, num_classes=config.data.num_classes)
        if loaded.info["image_channels"] != config.data.image_channels:
            raise ValueError(
                f"checkpoint {checkpoint} takes {loaded.info['image_channels']}-channel images, "
                f"the config's data.image_channels is {config.data.image_channels}.")
        preprocessing = loaded.preprocessing.for_channels(config.data.image_channels)
        return (_PixelModel(loaded), preprocessing, loaded.preprocessing_source,
                os.path.abspath(checkpoint))
    path = resolve_checkpoint(checkpoint)
    model = keras.models.load_model(path, compile=False)
    check_class_count(model, config.data.num_classes, path)
    preprocessing, source = resolve_preprocessing(checkpoint, model, config,
                                                  config.data.image_channels)
    return model, preprocessing, source, path


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
    (or, for an export, next to it) unless ``out_dir`` is given.

    Raises:
        ValueError: the checkpoint predicts another number of classes than
            ``config.data.num_classes`` (nothing is written).
    """
    model, preprocessing, source, path = _load_model(checkpoint, config)
    if verbose:
        print(f"Checkpoint {path}\nNormalisation {preprocessing.to_dict()} from {source}",
              flush=True)
    options = InferenceOptions.from_eval_config(
        config.eval, scales=tuple(scales) if scales else None, flip=flip, overlap=overlap)
    if window is not None:
        options = InferenceOptions(**{**options.to_dict(), "window": window or None})
    scores = evaluate_split(model, config, preprocessing, split, verbose=verbose, options=options)
    if out_dir is None:
        out_dir = _default_out_dir(checkpoint, path, split, exported=isinstance(model, _PixelModel))
    write_evaluation(out_dir, scores, {"checkpoint": os.path.abspath(path),
                                       "normalization": preprocessing.to_dict(),
                                       "normalization_source": source,
                                       "inference": options.to_dict()})
    return scores, out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.evaluate",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("config", help="the run config (e.g. RUN/config.json)")
    parser.add_argument("--checkpoint", required=True,
                        help="a .keras file, a run folder, an export folder or an exported "
                             ".tflite / .onnx file")
    parser.add_argument("--split", help="split to score (default: the config's eval.split)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--scales", type=float, nargs="+", help="test-time scales, e.g. 0.75 1 1.25")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="average the horizontally flipped prediction")
    parser.add_argument("--window", nargs="+", metavar="SIZE",
                        help="sliding windows: H W, one size, 'crop' (the training crop) or 'none'")
    parser.add_argument("--overlap", type=float, help="sliding-window overlap fraction")
    parser.add_argument("--out", help="report folder (default: RUN/eval-SPLIT)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output (a progress bar only on a terminal)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        split = args.split or config.eval.split
        scores, out_dir = evaluate_checkpoint(
            config, args.checkpoint, split, scales=args.scales, flip=args.flip,
            window=parse_window(args.window, config), overlap=args.overlap, out_dir=args.out,
            verbose=progress_verbosity(args.quiet))
    except (ConfigError, DatasetError, FileNotFoundError, ValueError) as error:
        return report_error(error, {"checkpoint": "--checkpoint", "out": "--out",
                                    "window": "--window", "scales": "--scales",
                                    "overlap": "--overlap"})
    print(f"\n{split}:\n{format_scores(scores)}\n\nWrote {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
