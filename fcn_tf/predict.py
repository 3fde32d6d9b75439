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
import json
import os
import sys

import cv2
import numpy as np
from PIL import Image

from fcn_tf.data.config import DEFAULT_MAX_IMAGE_PIXELS
from fcn_tf.data.decode import ImageTooLargeError, read_header, read_image_array
from fcn_tf.inference import InferenceOptions, sliding_window_bands
from fcn_tf.outputs import logits_to_classes, logits_to_probabilities
from fcn_tf.preprocessing import rgb_to_luma
from fcn_tf.runs import load_for_inference
from fcn_tf.utils.cli import report_error
from fcn_tf.visualize import overlay

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEFAULT_WINDOW = (512, 512)
DEFAULT_MAX_PIXELS = 1024 * 1024
MANIFEST = ".fcn_tf_predict.jsonl"
FLAGS = {"checkpoint": "--model", "model": "--model", "out_dir": "--out", "window": "--window",
         "overlap": "--overlap", "scales": "--scales", "window_batch": "--window-batch",
         "max_image_pixels": "--max-image-pixels", "overwrite": "--overwrite"}


def read_manifest(folder):
    """``{file name: {"size", "mtime_ns"} or None}``: what predict wrote in ``folder``.

    ``None`` marks a file predict was about to write when it stopped. The
    manifest is ``folder/.fcn_tf_predict.jsonl``, one JSON object per line;
    the last line about a name wins, and a line cut short by a crash is skipped.
    """
    path = os.path.join(folder, MANIFEST)
    files = {}
    if not os.path.isfile(path):
        return files
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
                files[entry["name"]] = entry.get("stat")
            except (ValueError, KeyError, TypeError):
                continue
    return files


class _Manifest:
    """The manifest of ``out_dir``, compacted once, then appended to as files are written."""

    def __init__(self, folder):
        self.path = os.path.join(folder, MANIFEST)
        self.files = {name: entry for name, entry in read_manifest(folder).items()
                      if os.path.lexists(os.path.join(folder, name))}
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.writelines(_line(name, entry) for name, entry in self.files.items())
        os.replace(temporary, self.path)

    def record(self, names, folder, written):
        """Append ``names`` as about to be written (``written=False``) or as written."""
        with open(self.path, "a", encoding="utf-8") as handle:
            for name in names:
                entry = None
                if written:
                    info = os.stat(os.path.join(folder, name))
                    entry = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
                self.files[name] = entry
                handle.write(_line(name, entry))


def _line(name, entry):
    return json.dumps({"name": name, "stat": entry}, ensure_ascii=False) + "\n"


def made_by_predict(folder, name, manifest):
    """Whether ``folder/name`` is a file predict wrote there and nobody changed since."""
    if name not in manifest:
        return False
    path = os.path.join(folder, name)
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    entry = manifest[name]
    if entry is None:  # predict stopped while writing it
        return True
    info = os.stat(path)
    return info.st_size == entry["size"] and info.st_mtime_ns == entry["mtime_ns"]


def list_inputs(inputs, made=None):
    """Image paths from files and folders (folders: their images, sorted, not recursive).

    In a folder, sub-folders are passed over, and so are the files an earlier
    predict wrote there (listed in its manifest), which are appended to
    ``made`` when given. A file given by name is kept as it is, so that a
    pipe, a broken link or a link loop is reported when it is read.
    """
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            outputs = read_manifest(item)
            found = []
            for name in sorted(os.listdir(item)):
                path = os.path.join(item, name)
                if not name.lower().endswith(IMAGE_SUFFIXES) or os.path.isdir(path):
                    continue
                if name in outputs:
                    if made is not None:
                        made.append(path)
                    continue
                found.append(path)
            if not found:
                raise FileNotFoundError(
                    f"INPUT {item}: a folder without images (looked for "
                    f"{', '.join(IMAGE_SUFFIXES)}; files predict wrote there are not inputs). "
                    "Give image files or a folder holding some."
                )
            paths += found
        elif os.path.lexists(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"INPUT {item}: no such file or folder.")
    return paths


def read_rgb(path, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """uint8 ``[H, W, 3]`` upright RGB of an image file (Pillow: PNG, JPEG, TIFF, ...).

    An image over ``max_image_pixels`` is refused from its header
    (:class:`~fcn_tf.data.decode.ImageTooLargeError`), before decoding.
    """
    return read_image_array(path, 3, max_image_pixels, "max_image_pixels")


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
    if not cv2.imwrite(path, picture[..., ::-1]):
        raise OSError(f"could not write {path} (OpenCV's PNG writer refused it).")


def options_for(shape, window, overlap, scales, flip, max_pixels, window_batch):
    """:class:`InferenceOptions` for one image: whole image unless large or ``window`` given."""
    height, width = shape[:2]
    if window is None and height * width > max_pixels:
        window = DEFAULT_WINDOW
    return InferenceOptions(scales=tuple(scales), flip=flip, window=window, overlap=overlap,
                            window_batch=window_batch)


def output_names(stem, probabilities):
    """The files predict writes for an image of stem ``stem``."""
    return [f"{stem}.png", f"{stem}_overlay.png"] + (
        [f"{stem}_probabilities.npy"] if probabilities else [])


def plan_outputs(paths, probabilities):
    """``[(path, [output names])]``: a stem of its own for every image.

    Images sharing a stem (``a.png`` and ``a.jpg``, or the same name in two
    folders) get ``a``, ``a-2``, ``a-3`` ..., skipping any stem another image
    already uses; names are compared without case (macOS and Windows folders
    ignore it).
    """
    taken, plan = set(), []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        candidate, number = stem, 1
        while any(n.casefold() in taken for n in output_names(candidate, probabilities)):
            number += 1
            candidate = f"{stem}-{number}"
        names = output_names(candidate, probabilities)
        taken.update(n.casefold() for n in names)
        plan.append((path, names))
    return plan


def _file_id(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_outputs(plan, inputs, out_dir, overwrite=False):
    """Refuse, before anything is written, outputs that would replace inputs or others' files.

    An output may replace only a file predict wrote there (:func:`made_by_predict`),
    or with ``overwrite`` any file; never an input (the same file, also through
    a link) nor a folder.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"out_dir {out_dir} is a file; give a folder.")
    input_ids = {i for i in map(_file_id, inputs) if i is not None}
    manifest = read_manifest(out_dir) if os.path.isdir(out_dir) else {}
    over_inputs, others = [], []
    for path, names in plan:
        for name in names:
            target = os.path.join(out_dir, name)
            if _file_id(target) in input_ids:
                over_inputs.append(f"{target} (the input {path})" if os.path.normpath(target)
                                   != os.path.normpath(path) else target)
            elif os.path.isdir(target):
                raise IsADirectoryError(
                    f"out_dir {out_dir}: {name} is a folder, where predict would write a file. "
                    "Move it; out_dir may also name another folder.")
            elif os.path.lexists(target) and not overwrite and not made_by_predict(
                    out_dir, name, manifest):
                changed = " (predict wrote it, but it changed since)" if name in manifest else ""
                others.append(f"{target}{changed}")
    if over_inputs:
        raise ValueError(
            f"out_dir {out_dir}: predict would write over {len(over_inputs)} of its inputs:"
            f"{_listed(over_inputs)}\nIt never writes over an input, even with overwrite=True. "
            "out_dir must name another folder.")
    if others:
        raise FileExistsError(
            f"out_dir {out_dir}: predict would write over {len(others)} file(s) it did not "
            f"make:{_listed(others)}\nNothing was written. Pass overwrite=True to replace them "
            f"(files predict made, listed in {os.path.join(out_dir, MANIFEST)}, are replaced "
            "without it); out_dir may also name another folder.")


def _listed(items, limit=10):
    shown = "".join(f"\n  {item}" for item in items[:limit])
    return shown + (f"\n  ... and {len(items) - limit} more" if len(items) > limit else "")


def _readable(plan, max_image_pixels, skipped, verbose):
    """The plan without images whose header is unreadable or over the limit.

    Without ``skipped`` the first such image raises, before anything is written.
    """
    kept = []
    for path, names in plan:
        try:
            read_header(path, max_image_pixels, "max_image_pixels")
        except (OSError, ValueError) as error:
            _skip(path, error, skipped, verbose and f"{path}: skipped")
            continue
        kept.append((path, names))
    return kept


def _skip(path, error, skipped, note):
    """Raise ``error`` as a message naming the INPUT, or append it to ``skipped``."""
    if isinstance(error, ImageTooLargeError):
        reason, message = error.detail, f"INPUT {error}"
    else:
        reason, message = str(error), f"INPUT {path}: not a readable image ({error})."
    if skipped is None:
        raise ValueError(message) from None
    skipped.append((path, reason))
    if note:
        print(f"{note}: {reason}", flush=True)


def predict_paths(model, paths, out_dir, *, window=None, overlap=0.5, scales=(1.0,), flip=False,
                  probabilities=False, max_pixels=DEFAULT_MAX_PIXELS,
                  max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS, overwrite=False, window_batch=2,
                  verbose=1, skipped=None):
    """Segment every image in ``paths``; return the list of written files.

    Before any work, every image's header is read and every output checked
    (:func:`check_outputs`): nothing is written when an output would replace
    an input, or a file predict did not make (without ``overwrite``).

    Args:
        max_pixels: images with more pixels go through sliding windows.
        max_image_pixels: images with more pixels are refused from their
            header, before decoding.
        overwrite: replace existing files predict did not make (never inputs).
        skipped: a list; when given, an image that cannot be read (or is over
            ``max_image_pixels``) is appended to it as ``(path, reason)`` and
            the others are still segmented. Without it the first such image raises.
    """
    plan = plan_outputs(paths, probabilities)
    check_outputs(plan, paths, out_dir, overwrite)
    plan = _readable(plan, max_image_pixels, skipped, verbose)
    os.makedirs(out_dir, exist_ok=True)
    manifest = _Manifest(out_dir)
    written = []
    for number, (path, names) in enumerate(plan, 1):
        try:
            rgb = read_rgb(path, max_image_pixels)
        except (OSError, ValueError) as error:
            _skip(path, error, skipped, verbose and f"[{number}/{len(plan)}] {path}: skipped")
            continue
        files = [os.path.join(out_dir, name) for name in names]
        manifest.record(names, out_dir, written=False)
        for file in files:  # a replaced file is unlinked: a link's target is never written
            if os.path.lexists(file):
                os.unlink(file)
        options = options_for(rgb.shape, window, overlap, scales, flip, max_pixels, window_batch)
        classes = segment_image(model, rgb, options, files[2] if probabilities else None)
        save_class_png(files[0], classes, model.info["colors"])
        save_overlay(files[1], rgb, classes, model.info["class_names"], model.info["colors"])
        manifest.record(names, out_dir, written=True)
        written += files
        if verbose:
            how = "whole image"
            if options.window:
                win_h, win_w = (min(options.window[0], rgb.shape[0]),
                                min(options.window[1], rgb.shape[1]))
                how = f"windows {win_h}x{win_w}, overlap {options.overlap}"
            print(f"[{number}/{len(plan)}] {path} ({rgb.shape[1]}x{rgb.shape[0]}, {how}) "
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
    args = parser.parse_args(argv)
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
            _readable(plan, args.max_image_pixels, None, 0)
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
