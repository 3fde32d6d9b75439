"""Segmenting image files: class ids, overlays and probabilities written for each.

:func:`predict_paths` is what ``python -m fcn_tf.predict`` runs: every
output is planned and checked before any work (:mod:`fcn_tf.inference.writing`),
then each image is read upright (:mod:`fcn_tf.inference.images`), segmented
band by band with :func:`~fcn_tf.inference.logits.sliding_window_bands`
(:func:`segment_image`) and written as pictures
(:mod:`fcn_tf.inference.pictures`).

Example:
    >>> model = load_for_inference("runs/default")                   # doctest: +SKIP
    >>> predict_paths(model, ["photo.jpg"], "out", flip=True)         # doctest: +SKIP
    ['out/photo.png', 'out/photo_overlay.png']
"""

import os

import numpy as np

from fcn_tf.data.config import DEFAULT_MAX_IMAGE_PIXELS
from fcn_tf.data.decode import ImageTooLargeError, read_header
from fcn_tf.inference.images import read_rgb, to_model_channels
from fcn_tf.inference.logits import sliding_window_bands
from fcn_tf.inference.options import InferenceOptions
from fcn_tf.inference.pictures import save_class_png, save_overlay
from fcn_tf.inference.writing import Manifest, check_outputs, plan_outputs
from fcn_tf.outputs import logits_to_classes, logits_to_probabilities

DEFAULT_WINDOW = (512, 512)
DEFAULT_MAX_PIXELS = 1024 * 1024


def segment_image(model, rgb, options, probabilities_path=None):
    """Class ids ``[H, W]`` (uint8) of one RGB image; optional float16 probabilities on disk.

    ``model`` is a :class:`~fcn_tf.inference.loading.InferenceModel`. Logits
    are computed band by band (:func:`~fcn_tf.inference.logits.sliding_window_bands`);
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


def options_for(shape, window, overlap, scales, flip, max_pixels, window_batch):
    """:class:`InferenceOptions` for one image: whole image unless large or ``window`` given."""
    height, width = shape[:2]
    if window is None and height * width > max_pixels:
        window = DEFAULT_WINDOW
    return InferenceOptions(scales=tuple(scales), flip=flip, window=window, overlap=overlap,
                            window_batch=window_batch)


def readable_plan(plan, max_image_pixels, skipped=None, verbose=0):
    """The plan without images whose header is unreadable or over ``max_image_pixels``.

    Without ``skipped`` the first such image raises, before anything is
    written; with it (a list) each is appended as ``(path, reason)``.
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
    (:func:`~fcn_tf.inference.writing.check_outputs`): nothing is written
    when an output would replace an input, or a file predict did not make
    (without ``overwrite``).

    Args:
        model: an :class:`~fcn_tf.inference.loading.InferenceModel`.
        window, overlap, scales, flip, window_batch: as
            :class:`~fcn_tf.inference.options.InferenceOptions`.
        probabilities: also write ``NAME_probabilities.npy``.
        max_pixels: images with more pixels go through sliding windows.
        max_image_pixels: images with more pixels are refused from their
            header, before decoding.
        overwrite: replace existing files predict did not make (never inputs).
        verbose: 1 prints a line per image.
        skipped: a list; when given, an image that cannot be read (or is over
            ``max_image_pixels``) is appended to it as ``(path, reason)`` and
            the others are still segmented. Without it the first such image raises.
    """
    plan = plan_outputs(paths, probabilities)
    check_outputs(plan, paths, out_dir, overwrite)
    plan = readable_plan(plan, max_image_pixels, skipped, verbose)
    os.makedirs(out_dir, exist_ok=True)
    manifest = Manifest(out_dir)
    written = []
    for number, (path, names) in enumerate(plan, 1):
        try:
            rgb = read_rgb(path, max_image_pixels)
        except (OSError, ValueError) as error:
            _skip(path, error, skipped, verbose and f"[{number}/{len(plan)}] {path}: skipped")
            continue
        options = options_for(rgb.shape, window, overlap, scales, flip, max_pixels, window_batch)
        files = _write_prediction(model, rgb, options, out_dir, names, manifest)
        written += files
        if verbose:
            print(f"[{number}/{len(plan)}] {path} ({rgb.shape[1]}x{rgb.shape[0]}, "
                  f"{_how(options, rgb.shape)}) -> {files[0]}", flush=True)
    return written


def _write_prediction(model, rgb, options, out_dir, names, manifest):
    """Segment ``rgb`` and write ``names`` (class PNG, overlay[, probabilities]) in ``out_dir``."""
    files = [os.path.join(out_dir, name) for name in names]
    manifest.record(names, out_dir, written=False)
    for file in files:  # a replaced file is unlinked: a link's target is never written
        if os.path.lexists(file):
            os.unlink(file)
    classes = segment_image(model, rgb, options, files[2] if len(files) > 2 else None)
    save_class_png(files[0], classes, model.info["colors"])
    save_overlay(files[1], rgb, classes, model.info["class_names"], model.info["colors"])
    manifest.record(names, out_dir, written=True)
    return files


def _how(options, shape):
    """``whole image`` or the windows an image of ``shape`` went through."""
    if not options.window:
        return "whole image"
    win_h, win_w = min(options.window[0], shape[0]), min(options.window[1], shape[1])
    return f"windows {win_h}x{win_w}, overlap {options.overlap}"
