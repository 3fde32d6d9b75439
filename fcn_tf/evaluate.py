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
import sys

from fcn_tf.config import ConfigError
from fcn_tf.config.run_config import load_config
from fcn_tf.data import DatasetError
from fcn_tf.evaluation import evaluate_checkpoint, format_scores
from fcn_tf.utils.cli import progress_verbosity, report_error

FLAGS = {"checkpoint": "--checkpoint", "out": "--out", "window": "--window", "scales": "--scales",
         "overlap": "--overlap"}


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


def _parser():
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
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        split = args.split or config.eval.split
        if not split:
            raise ConfigError(
                "eval.split: the config names no split to score (null, as in a config whose "
                "final model trains on train + val). Name one with --split, e.g. --split test.")
        scores, out_dir = evaluate_checkpoint(
            config, args.checkpoint, split, scales=args.scales, flip=args.flip,
            window=parse_window(args.window, config), overlap=args.overlap, out_dir=args.out,
            verbose=progress_verbosity(args.quiet))
    except (ConfigError, DatasetError, FileNotFoundError, ValueError) as error:
        return report_error(error, FLAGS)
    print(f"\n{split}:\n{format_scores(scores)}\n\nWrote {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
