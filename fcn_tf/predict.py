"""``python -m fcn_tf.predict --model PATH INPUT... --out DIR``.

Segments images (files or folders of them) with a ``.keras`` checkpoint, a
run folder or an exported SavedModel. For each image ``NAME`` it writes to
``--out``:

- ``NAME.png``: class ids as a palette PNG (pixel value = class id, shown in
  the dataset's colours);
- ``NAME_overlay.png``: the colour mask blended over the image, with a legend;
- ``NAME_probabilities.npy`` with ``--probabilities``: float16
  ``[H, W, classes]``, written through a memory map.

Images of any size are accepted. Images larger than ``--max-pixels`` (or any
image when ``--window`` is given) go through sliding windows with overlap, a
few windows at a time, so memory is bounded by one window-high band of the
image; ``--scales`` and ``--flip`` add test-time augmentation.
"""

import argparse
import os
import sys

import cv2
import numpy as np
from PIL import Image

from fcn_tf.data.decode import read_image_array
from fcn_tf.inference import InferenceOptions, sliding_window_bands
from fcn_tf.outputs import logits_to_classes, logits_to_probabilities
from fcn_tf.preprocessing import rgb_to_luma
from fcn_tf.runs import load_for_inference
from fcn_tf.utils.cli import report_error
from fcn_tf.visualize import overlay

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEFAULT_WINDOW = (512, 512)
DEFAULT_MAX_PIXELS = 1024 * 1024


def list_inputs(inputs):
    """Image paths from files and folders (folders: their images, sorted, not recursive)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if n.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise FileNotFoundError(
                    f"INPUT {item}: a folder without images (looked for "
                    f"{', '.join(IMAGE_SUFFIXES)}). Give image files or a folder holding some."
                )
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"INPUT {item}: no such file or folder.")
    return paths


def read_rgb(path):
    """uint8 ``[H, W, 3]`` RGB of an image file of any size (Pillow: PNG, JPEG, TIFF, ...)."""
    return read_image_array(path, 3, allow_large=True)


def to_model_channels(rgb, channels):
    """RGB to the model's channels (grayscale: luma, as training read it)."""
    return rgb if channels == 3 else rgb_to_luma(rgb)


def segment_image(model, rgb, options, probabilities_path=None):
    """Class ids ``[H, W]`` (uint8) of one RGB image; optional float16 probabilities on disk.

    ``model`` is a :class:`~fcn_tf.inference.InferenceModel`. Logits are
    computed band by band (:func:`~fcn_tf.inference.sliding_window_bands`);
    with ``probabilities_path`` they are written as softmax to a ``.npy``
    memory map, so neither is ever held whole in memory.
    """
    pixels = to_model_channels(rgb, model.info["image_channels"])
    height, width = pixels.shape[:2]
    classes = np.zeros((height, width), np.uint8)
    probabilities = None
    for top, bottom, logits in sliding_window_bands(model.logits, pixels, options):
        classes[top:bottom] = logits_to_classes(logits)
        if probabilities_path is not None:
            band = logits_to_probabilities(logits)
            if probabilities is None:
                probabilities = np.lib.format.open_memmap(
                    probabilities_path, mode="w+", dtype=np.float16,
                    shape=(height, width, band.shape[-1]))
            probabilities[top:bottom] = band
    if probabilities is not None:
        probabilities.flush()
        del probabilities
    return classes


def save_class_png(path, classes, colors):
    """A palette PNG: pixel values are class ids, the palette the class colours."""
    image = Image.fromarray(np.asarray(classes, np.uint8), mode="P")
    table = np.zeros((256, 3), np.uint8)
    table[: len(colors)] = np.asarray(colors, np.uint8)
    image.putpalette(table.reshape(-1).tolist())
    image.save(path)


def save_overlay(path, rgb, classes, class_names, colors, alpha=0.5):
    """The colour mask over the image, with a legend strip of the classes present."""
    picture = np.empty_like(rgb)
    for top in range(0, rgb.shape[0], 256):  # row blocks: no full-size float copies
        rows = slice(top, top + 256)
        picture[rows] = overlay(rgb[rows], classes[rows], colors, alpha=alpha)
    present = [int(c) for c in np.unique(classes) if c < len(class_names)]
    row = max(14, min(28, picture.shape[1] // 25))
    legend = np.full((row * len(present) + 4, picture.shape[1], 3), 255, np.uint8)
    for index, c in enumerate(present):
        y = 2 + index * row
        legend[y + 2:y + row - 2, 4:4 + row - 4] = colors[c]
        cv2.putText(legend, class_names[c], (row + 4, y + row - 5), cv2.FONT_HERSHEY_SIMPLEX,
                    row / 35.0, (0, 0, 0), 1, cv2.LINE_AA)
    picture = np.concatenate([picture, legend]) if present else picture
    cv2.imwrite(path, picture[..., ::-1])


def options_for(shape, window, overlap, scales, flip, max_pixels, window_batch):
    """:class:`InferenceOptions` for one image: whole image unless large or ``window`` given."""
    height, width = shape[:2]
    if window is None and height * width > max_pixels:
        window = DEFAULT_WINDOW
    return InferenceOptions(scales=tuple(scales), flip=flip, window=window, overlap=overlap,
                            window_batch=window_batch)


def predict_paths(model, paths, out_dir, *, window=None, overlap=0.5, scales=(1.0,), flip=False,
                  probabilities=False, max_pixels=DEFAULT_MAX_PIXELS, window_batch=2, verbose=1,
                  skipped=None):
    """Segment every image in ``paths``; return the list of written files.

    Args:
        skipped: a list; when given, an image that cannot be read is appended
            to it as ``(path, reason)`` and the others are still segmented.
            Without it the first unreadable image raises.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"out_dir {out_dir} is a file; give a folder.")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    stems = {}
    for number, path in enumerate(paths, 1):
        stem = os.path.splitext(os.path.basename(path))[0]
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:  # the same name in two input folders
            stem = f"{stem}-{stems[stem]}"
        try:
            rgb = read_rgb(path)
        except (OSError, ValueError) as error:
            if skipped is None:
                raise ValueError(f"INPUT {path}: not a readable image ({error}).") from None
            skipped.append((path, str(error)))
            if verbose:
                print(f"[{number}/{len(paths)}] {path}: skipped, not a readable image", flush=True)
            continue
        options = options_for(rgb.shape, window, overlap, scales, flip, max_pixels, window_batch)
        npy = os.path.join(out_dir, f"{stem}_probabilities.npy") if probabilities else None
        classes = segment_image(model, rgb, options, npy)
        files = [os.path.join(out_dir, f"{stem}.png"), os.path.join(out_dir, f"{stem}_overlay.png")]
        save_class_png(files[0], classes, model.info["colors"])
        save_overlay(files[1], rgb, classes, model.info["class_names"], model.info["colors"])
        written += files + ([npy] if npy else [])
        if verbose:
            how = "whole image"
            if options.window:
                win_h, win_w = (min(options.window[0], rgb.shape[0]),
                                min(options.window[1], rgb.shape[1]))
                how = f"windows {win_h}x{win_w}, overlap {options.overlap}"
            print(f"[{number}/{len(paths)}] {path} ({rgb.shape[1]}x{rgb.shape[0]}, {how}) "
                  f"-> {files[0]}", flush=True)
    return written


def main(argv=None):
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
    parser.add_argument("--window-batch", type=int, default=2, help="windows per model call")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="go on past images that cannot be read, list them, exit 1")
    args = parser.parse_args(argv)
    skipped = [] if args.skip_invalid else None
    try:
        paths = list_inputs(args.inputs)
        model = load_for_inference(args.model)
        print(f"Model: {model.path} ({model.kind}); normalisation {model.preprocessing.to_dict()} "
              f"from {model.preprocessing_source}", flush=True)
        predict_paths(model, paths, args.out, window=args.window, overlap=args.overlap,
                      scales=args.scales, flip=args.flip, probabilities=args.probabilities,
                      max_pixels=args.max_pixels, window_batch=args.window_batch,
                      skipped=skipped)
    except (FileNotFoundError, ValueError, OSError) as error:
        return report_error(error, {"checkpoint": "--model", "model": "--model",
                                    "out_dir": "--out", "window": "--window",
                                    "overlap": "--overlap", "scales": "--scales",
                                    "window_batch": "--window-batch"})
    print(f"Wrote {len(paths) - len(skipped or [])} predictions to {args.out}")
    if skipped:
        print(f"Skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
