"""The logits of a batch: test-time augmentation, sliding windows, :func:`predict_logits`.

Everything here works on a *logits function* ``fn(images) -> logits``: a
batch ``[B, h, w, C]`` of float32 images in, ``[B, h, w, K]`` float32 logits
out. For a Keras model on normalised images that is the model itself; for
raw pixels it is normalisation followed by the model
(:func:`fcn_tf.inference.load_for_inference` builds one from a ``.keras``
checkpoint, a run folder or an export).

- :func:`tta_logits`: logits averaged over scales and a horizontal flip
  (each variant's logits resized back to the input size, bilinearly).
- :func:`sliding_window_bands`: an image of any size cut into overlapping
  windows, run a few windows at a time, overlaps blended with a weight that
  tapers towards the window borders (or plain averaging); finished rows are
  handed out top to bottom, so memory is bounded by one window-high band of
  logits, whatever the image height.
- :func:`predict_logits`: the one entry point for a batch with
  :class:`~fcn_tf.inference.options.InferenceOptions`; evaluation, predict
  and the tests call it.

Example:
    >>> import numpy as np
    >>> double = lambda x: np.concatenate([x, -x], axis=-1)   # a 2-class "model"
    >>> image = np.random.rand(1, 40, 50, 1).astype(np.float32)
    >>> whole = predict_logits(double, image)
    >>> tiled = predict_logits(double, image, InferenceOptions(window=(16, 16), overlap=0.5))
    >>> bool(np.allclose(whole, tiled, atol=1e-6))
    True
"""

import numpy as np
import tensorflow as tf

from fcn_tf.inference.options import InferenceOptions


def _resize(images, size):
    return tf.image.resize(images, size, method="bilinear").numpy()


def tta_logits(fn, images, scales=(1.0,), flip=False):
    """Logits of ``images`` averaged over ``scales`` and, with ``flip``, mirror images.

    Each scaled input is ``round(H * s) x round(W * s)``; its logits are
    resized back to ``H x W`` bilinearly before averaging.
    """
    images = np.asarray(images, np.float32)
    height, width = images.shape[1:3]
    total, count = None, 0
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = images if size == (height, width) else _resize(images, size)
        for mirrored in ((False, True) if flip else (False,)):
            inputs = scaled[:, :, ::-1] if mirrored else scaled
            logits = np.asarray(fn(np.ascontiguousarray(inputs)), np.float32)
            if mirrored:
                logits = logits[:, :, ::-1]
            if logits.shape[1:3] != (height, width):
                logits = _resize(logits, (height, width))
            total = logits.copy() if total is None else total + logits
            count += 1
    return total / np.float32(count)


def window_starts(length, window, overlap):
    """Start offsets of windows of ``window`` covering ``length`` with ``overlap``.

    The stride is ``round(window * (1 - overlap))`` (at least 1); the last
    window is aligned with the end, so every position is covered.
    """
    if length <= window:
        return [0]
    stride = max(1, int(round(window * (1.0 - overlap))))
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def window_weights(height, width, weighting="taper"):
    """``[height, width]`` blending weights: all ones, or a pyramid that is 1 in the middle.

    The taper of a 1-D window of ``n`` is ``min(i + 1, n - i) / ceil(n / 2)``,
    so no pixel gets weight zero and every position keeps a prediction.
    """
    if weighting == "average":
        return np.ones((height, width), np.float32)

    def ramp(n):
        i = np.arange(n, dtype=np.float32)
        return np.minimum(i + 1, n - i) / np.float32((n + 1) // 2)

    return np.outer(ramp(height), ramp(width)).astype(np.float32)


def sliding_window_bands(fn, image, options):
    """Logits of one ``[H, W, C]`` image by sliding windows, as finished row bands.

    Yields ``(row_start, row_end, logits[row_end - row_start, W, K])`` from
    top to bottom. Only one window-high band of logits (and ``options.window_batch``
    windows) is held at a time, so memory does not grow with the image height.
    Each window goes through :func:`tta_logits` with the options' scales and flip.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    win_h, win_w = options.window or (height, width)
    win_h, win_w = min(win_h, height), min(win_w, width)
    rows = window_starts(height, win_h, options.overlap)
    cols = window_starts(width, win_w, options.overlap)
    weights = window_weights(win_h, win_w, options.weighting)[..., None]
    band = band_weight = None  # rows [top, top + win_h) of the image
    top = rows[0]
    for index, y in enumerate(rows):
        if band is not None and y > top:  # shift the band down to start at y
            shift = y - top
            band[:-shift], band[-shift:] = band[shift:].copy(), 0.0
            band_weight[:-shift], band_weight[-shift:] = band_weight[shift:].copy(), 0.0
            top = y
        for first in range(0, len(cols), options.window_batch):
            xs = cols[first:first + options.window_batch]
            windows = np.stack([image[y:y + win_h, x:x + win_w] for x in xs]).astype(np.float32)
            logits = tta_logits(fn, windows, options.scales, options.flip)
            if band is None:
                band = np.zeros((win_h, width, logits.shape[-1]), np.float32)
                band_weight = np.zeros((win_h, width, 1), np.float32)
            for x, window_logits in zip(xs, logits):
                band[:, x:x + win_w] += window_logits * weights
                band_weight[:, x:x + win_w] += weights
        next_top = rows[index + 1] if index + 1 < len(rows) else y + win_h
        done = next_top - top
        yield top, next_top, band[:done] / band_weight[:done]


def sliding_window_logits(fn, image, options):
    """The whole ``[H, W, K]`` logits of one image by :func:`sliding_window_bands`."""
    return np.concatenate([logits for _, _, logits in sliding_window_bands(fn, image, options)])


def predict_logits(fn, images, options=None):
    """Logits ``[B, H, W, K]`` of a batch with TTA and, if ``options.window``, sliding windows."""
    options = options or InferenceOptions()
    images = np.asarray(images, np.float32)
    if options.window is None:
        return tta_logits(fn, images, options.scales, options.flip)
    return np.stack([sliding_window_logits(fn, image, options) for image in images])
