"""``python -m fcn_tf.predict --model PATH INPUT... --out DIR``.

Segments images (files or folders of them) with a ``.keras`` checkpoint, a
run folder or an exported SavedModel. For each image ``NAME`` it writes to
``--out``:

- ``NAME.png``: class ids as a palette PNG (pixel value = class id, shown in
  the dataset's colours);
- ``NAME_overlay.png``: the colour mask blended over the image, with a legend;
- ``NAME_probabilities.npy`` with ``--probabilities``: float16
  ``[H, W, classes]``, written through a memory map.

Images up to ``--max-image-pixels`` (100 million by default) are accepted;
a larger one is refused from its header, before decoding, naming the file,
its size and the flag. Images larger than ``--max-pixels`` (or any image when
``--window`` is given) go through sliding windows with overlap, a few windows
at a time, so the model's memory is bounded by one window-high band of the
image; ``--scales`` and ``--flip`` add test-time augmentation. EXIF
orientation is applied, as in training.

Nothing a user made is written over. predict records each file it writes in
``--out`` in ``.fcn_tf_predict.jsonl`` (name, size, modification time) and
replaces, on a later run, only files listed there and unchanged since. Any
other existing file that would be written is refused before any work starts,
unless ``--overwrite`` is given; an input is never written over, even then.
Files predict made are left out when their folder is given as an INPUT.
"""

import argparse
import sys

from fcn_tf.data.config import DEFAULT_MAX_IMAGE_PIXELS
from fcn_tf.inference import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_WINDOW,
    MANIFEST,
    check_outputs,
    list_inputs,
    load_for_inference,
    plan_outputs,
    predict_paths,
    readable_plan,
)
from fcn_tf.utils.cli import report_error

FLAGS = {"checkpoint": "--model", "model": "--model", "out_dir": "--out", "window": "--window",
         "overlap": "--overlap", "scales": "--scales", "window_batch": "--window-batch",
         "max_image_pixels": "--max-image-pixels", "overwrite": "--overwrite"}


def _parser():
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.predict",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument("--model", required=True,
                        help="a .keras checkpoint, a run folder or an exported SavedModel folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write NAME_probabilities.npy (float16 [H, W, classes])")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="test-time scales, logits averaged (e.g. 0.75 1 1.25)")
    parser.add_argument("--flip", action="store_true", help="also average the mirrored image")
    parser.add_argument("--window", type=int, nargs=2, metavar=("H", "W"),
                        help="sliding-window size for every image (default: whole image up to "
                             f"--max-pixels, {DEFAULT_WINDOW[0]}x{DEFAULT_WINDOW[1]} windows above)")
    parser.add_argument("--overlap", type=float, default=0.5, help="window overlap fraction")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="larger images go through sliding windows")
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help="refuse larger images from their header, before decoding "
                             f"(default {DEFAULT_MAX_IMAGE_PIXELS:,}; about 10 bytes of memory "
                             "per pixel are needed)")
    parser.add_argument("--window-batch", type=int, default=2, help="windows per model call")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="go on past images that cannot be read, list them, exit 1")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace existing files in --out that predict did not make "
                             f"(those it made are listed in --out/{MANIFEST}); never an input")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    skipped = [] if args.skip_invalid else None
    made = []
    try:
        paths = list_inputs(args.inputs, made)
        if made:
            print(f"Left out {len(made)} file(s) an earlier predict wrote into an INPUT folder "
                  f"(listed in its {MANIFEST}).", flush=True)
        # Refused outputs and (without --skip-invalid) unreadable or too large
        # images are refused before the model is loaded.
        plan = plan_outputs(paths, args.probabilities)
        check_outputs(plan, paths, args.out, args.overwrite)
        if skipped is None:
            readable_plan(plan, args.max_image_pixels)
        model = load_for_inference(args.model)
        print(f"Model: {model.path} ({model.kind}); normalisation {model.preprocessing.to_dict()} "
              f"from {model.preprocessing_source}", flush=True)
        predict_paths(model, paths, args.out, window=args.window, overlap=args.overlap,
                      scales=args.scales, flip=args.flip, probabilities=args.probabilities,
                      max_pixels=args.max_pixels, max_image_pixels=args.max_image_pixels,
                      overwrite=args.overwrite, window_batch=args.window_batch, skipped=skipped)
    except (FileNotFoundError, ValueError, OSError) as error:
        return report_error(error, FLAGS)
    print(f"Wrote {len(paths) - len(skipped or [])} predictions to {args.out}")
    if skipped:
        print(f"Skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
