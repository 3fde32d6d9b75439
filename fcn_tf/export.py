"""``python -m fcn_tf.export --checkpoint PATH --out DIR [--tflite] [--onnx] [--check SPLIT]``.

Exports a trained model as a TensorFlow SavedModel for TensorFlow Serving
(see docs/SERVING.md), and optionally as LiteRT and ONNX files, all with the
normalisation inside so clients send raw pixels:

- ``serving_default``: ``images`` uint8 ``[batch, height, width, 3]`` (any
  height and width) -> ``class_ids`` int32 ``[batch, height, width]`` and
  ``probabilities`` float32 ``[batch, height, width, classes]``.
- ``serving_bytes``: ``image_bytes`` string ``[batch]`` of encoded JPEG / PNG
  (/ BMP / GIF) images, all of one size -> the same outputs.
- a non-signature function ``logits`` (Python ``tf.saved_model.load`` only):
  float32 pixels ``[batch, height, width, input_channels]`` in [0, 255] ->
  logits, used by ``python -m fcn_tf.predict`` for test-time augmentation.
- ``--tflite``: one LiteRT file per ``--tflite-precision`` (``model.tflite``,
  ``model_float16.tflite``, ``model_int8.tflite``, ``model_int8_full.tflite``),
  uint8 ``[1, H, W, 3]`` with free height and width unless ``--tflite-size``;
  ``--onnx``: ``model.onnx`` / ``model_int8.onnx``, uint8 ``[batch, H, W, 3]``
  (:mod:`fcn_tf.runtimes`). Each has the same two outputs.

Grayscale models (``image_channels`` 1) take the same 3-channel RGB inputs;
the graph converts them to luma (ITU-R 601-2, as the data pipeline does).
A two-class model with one binary logit gives ``probabilities`` ``[1 - p, p]``.
Convolution + BatchNorm pairs are folded into one convolution in every
exported graph (:mod:`fcn_tf.models.folding`; ``--no-fold-batch-norm`` keeps
them).

``metadata.json`` next to ``saved_model.pb`` holds the model name, class
names and colours, input channels, normalisation, training config and what
each LiteRT / ONNX file takes and gives. ``--check SPLIT`` then scores every
file against the checkpoint on that split of the run's data
(:mod:`fcn_tf.fidelity`) and writes ``fidelity.json``.

The export is written to a temporary folder next to ``--out`` and renamed
into place, so a failed export never leaves half a model. The work is done
by :mod:`fcn_tf.exporting` (:func:`~fcn_tf.exporting.export_checkpoint`);
this module parses the flags and prints.
"""

import argparse
import os
import sys

from fcn_tf.data import DatasetError
from fcn_tf.exporting import ONNX_PRECISIONS, TFLITE_PRECISIONS, export_checkpoint
from fcn_tf.fidelity import FIDELITY_FILE, MAX_CHANGED, check_export, format_fidelity
from fcn_tf.precision import PRECISIONS
from fcn_tf.runs.files import atomic_write_json
from fcn_tf.runs.folder import find_run_dir, read_run_config
from fcn_tf.utils.cli import report_error


def _parser():
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.export",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--checkpoint", required=True,
                        help="a .keras checkpoint or a run folder (its best.keras)")
    parser.add_argument("--out", required=True, help="the SavedModel folder to create")
    parser.add_argument("--tflite", action="store_true", help="also write LiteRT (.tflite) files")
    parser.add_argument("--tflite-precision", choices=TFLITE_PRECISIONS, nargs="+",
                        default=["float32"], metavar="P",
                        help="one file per precision: float32, float16, int8 (dynamic range), "
                             "int8_full (calibrated on training images)")
    parser.add_argument("--tflite-size", type=int, nargs=2, metavar=("H", "W"),
                        help="fix the LiteRT input size (default: any height and width)")
    parser.add_argument("--onnx", action="store_true", help="also write ONNX (.onnx) files")
    parser.add_argument("--onnx-precision", choices=ONNX_PRECISIONS, nargs="+",
                        default=["float32"], metavar="P",
                        help="one file per precision: float32, int8 (dynamic)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="compute precision of the SavedModel (default: the checkpoint's); "
                             "mixed_bfloat16 is about 2x faster on CPUs with bf16 units")
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile with XLA: faster at a fixed size, but every new input "
                             "size compiles again (see docs/PERFORMANCE.md)")
    parser.add_argument("--no-fold-batch-norm", dest="fold_batch_norm", action="store_false",
                        help="keep BatchNormalization layers as trained instead of folding them "
                             "into the convolutions before them")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--check", metavar="SPLIT",
                        help="after exporting, score every file against the checkpoint on this "
                             "split of the run's data (pixels changed, mean IoU, images/s); "
                             f"writes OUT/{FIDELITY_FILE}")
    parser.add_argument("--check-only", action="store_true",
                        help="check the existing export --out; export nothing")
    parser.add_argument("--check-images", type=int, metavar="N",
                        help="check on the first N images of the split only")
    parser.add_argument("--max-changed", type=float, default=MAX_CHANGED, metavar="SHARE",
                        help="flag files that change more than this share of pixels "
                             f"(default {MAX_CHANGED}); a flagged check exits with status 3")
    return parser


def _check(args):
    """Run the fidelity check of ``args.out`` and write it; return the rows."""
    run_dir = find_run_dir(args.checkpoint)
    if run_dir is None:
        raise ValueError(f"checkpoint {args.checkpoint}: the check scores a split of a run's "
                         "data, and this checkpoint has no run folder (config.json).")
    config = read_run_config(run_dir)
    rows = check_export(args.out, args.checkpoint, config, args.check,
                        max_images=args.check_images, max_changed=args.max_changed)
    atomic_write_json(os.path.join(args.out, FIDELITY_FILE),
                      {"split": args.check, "checkpoint": os.path.abspath(args.checkpoint),
                       "max_changed": args.max_changed, "rows": rows})
    print(f"\nFidelity on {args.check} ({rows[0]['images']} images; the Keras model in float32 "
          "first, the reference):")
    print(format_fidelity(rows, args.max_changed))
    return rows


def _print_export(result):
    """Where the SavedModel and each file went, their sizes, and how to inspect them."""
    print(f"SavedModel: {result['export_dir']} ({result['saved_model_bytes'] / 2**20:.2f} MiB)")
    for name, size in result["files"].items():
        print(f"{name}: {os.path.join(result['export_dir'], name)} ({size / 2**20:.2f} MiB)")
    print(f"Inspect: saved_model_cli show --dir {result['export_dir']} --all")


def main(argv=None):
    args = _parser().parse_args(argv)
    flags = {"out": "--out", "checkpoint": "--checkpoint", "overwrite": "--overwrite",
             "tflite_precision": "--tflite-precision", "onnx_precision": "--onnx-precision",
             "max_changed": "--max-changed", "split": "--check", "max_images": "--check-images",
             "tflite_size": "--tflite-size", "export_dir": "--out"}
    if args.check_only and not args.check:
        return report_error(ValueError("check_only: --check-only needs --check SPLIT."), flags)
    try:
        if not args.check_only:
            result = export_checkpoint(
                args.checkpoint, args.out, overwrite=args.overwrite, tflite=args.tflite,
                tflite_precision=args.tflite_precision, tflite_size=args.tflite_size,
                precision=args.precision, jit_compile=args.jit_compile, verbose=1,
                onnx=args.onnx, onnx_precision=args.onnx_precision,
                fold_batch_norm=args.fold_batch_norm)
            _print_export(result)
        rows = _check(args) if args.check else []
    except (FileExistsError, FileNotFoundError, ValueError, OSError, DatasetError) as error:
        return report_error(error, flags)
    return 3 if any(row["flagged"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
