"""Shared inference: test-time augmentation and sliding windows, plus model loading.

Everything here works on a *logits function* ``fn(images) -> logits``: a
batch ``[B, h, w, C]`` of float32 images in, ``[B, h, w, K]`` float32 logits
out. For a Keras model on normalised images that is the model itself; for
raw pixels it is normalisation followed by the model (:func:`load_for_inference`
builds one from a ``.keras`` checkpoint, a run folder or an exported
SavedModel).

- :func:`tta_logits`: logits averaged over scales and a horizontal flip
  (each variant's logits resized back to the input size, bilinearly).
- :func:`sliding_window_bands`: an image of any size cut into overlapping
  windows, run a few windows at a time, overlaps blended with a weight that
  tapers towards the window borders (or plain averaging); finished rows are
  handed out top to bottom, so memory is bounded by one window-high band of
  logits, whatever the image height.
- :func:`predict_logits`: one entry point for a batch with
  :class:`InferenceOptions`.

Example:
    >>> import numpy as np
    >>> double = lambda x: np.concatenate([x, -x], axis=-1)   # a 2-class "model"
    >>> image = np.random.rand(1, 40, 50, 1).astype(np.float32)
    >>> whole = predict_logits(double, image)
    >>> tiled = predict_logits(double, image, InferenceOptions(window=(16, 16), overlap=0.5))
    >>> bool(np.allclose(whole, tiled, atol=1e-6))
    True
"""

import dataclasses
import json
import os

import numpy as np

WEIGHTINGS = ("taper", "average")
KERAS_SUFFIX = ".keras"
METADATA_FILE = "metadata.json"
PREPROCESSING_FILE = "preprocessing.json"
RUN_CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """How a batch is turned into logits.

    Args:
        scales: test-time scales; the logits of every scale are resized back
            to the input size and averaged.
        flip: also average the horizontally flipped prediction.
        window: ``(height, width)`` of sliding windows, or ``None`` for the
            whole image in one call. Windows never exceed the image.
        overlap: fraction of a window shared with its neighbour, in [0, 0.9].
        window_batch: windows per model call (bounds memory).
        weighting: ``"taper"`` (weights fall linearly towards window borders,
            never to zero) or ``"average"`` (equal weights).
    """

    scales: tuple = (1.0,)
    flip: bool = False
    window: tuple | None = None
    overlap: float = 0.5
    window_batch: int = 4
    weighting: str = "taper"

    def __post_init__(self):
        scales = tuple(float(s) for s in self.scales)
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales: expected positive numbers, received {list(self.scales)}.")
        object.__setattr__(self, "scales", scales)
        if self.window is not None:
            window = tuple(int(v) for v in np.broadcast_to(np.ravel(self.window), (2,)))
            if min(window) < 1:
                raise ValueError(f"window: expected [height, width] >= 1, received {list(window)}.")
            object.__setattr__(self, "window", window)
        if not 0.0 <= self.overlap <= 0.9:
            raise ValueError(f"overlap: expected a fraction in [0, 0.9], received {self.overlap}.")
        if self.window_batch < 1:
            raise ValueError(f"window_batch: expected >= 1, received {self.window_batch}.")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(
                f"weighting: expected one of {', '.join(WEIGHTINGS)}, received {self.weighting!r}."
            )

    @classmethod
    def from_eval_config(cls, eval_config, **overrides):
        """Options from a run config's ``eval`` section, with keyword overrides."""
        values = {"scales": tuple(eval_config.scales), "flip": eval_config.flip,
                  "window": eval_config.window, "overlap": eval_config.overlap}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self):
        return {"scales": list(self.scales), "flip": self.flip,
                "window": list(self.window) if self.window else None,
                "overlap": self.overlap, "window_batch": self.window_batch,
                "weighting": self.weighting}


# --- logits of a batch --------------------------------------------------------


def _resize(images, size):
    import tensorflow as tf

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


def logits_to_classes(logits):
    """Class ids: argmax, or ``logit > 0`` for a single binary logit."""
    logits = np.asarray(logits)
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(np.int32)
    return logits.argmax(-1).astype(np.int32)


def logits_to_probabilities(logits):
    """Softmax over classes; a single binary logit gives ``[1 - p, p]``."""
    logits = np.asarray(logits, np.float32)
    if logits.shape[-1] == 1:
        p = 1.0 / (1.0 + np.exp(-logits))
        return np.concatenate([1.0 - p, p], axis=-1)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


# --- finding checkpoints, run folders and preprocessing -----------------------


def find_run_dir(path):
    """The run folder of a checkpoint: the folder itself, its parent or grandparent.

    A run folder is one holding ``config.json``; ``None`` when there is none.
    """
    path = os.path.abspath(path)
    candidates = [path] if os.path.isdir(path) else []
    parent = os.path.dirname(path)
    candidates += [parent, os.path.dirname(parent)]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, RUN_CONFIG_FILE)):
            return folder
    return None


def resolve_checkpoint(path):
    """A ``.keras`` file path from a ``.keras`` file or a run folder (its best.keras)."""
    from fcn_tf.training.setup import resolve_checkpoint as resolve

    if not os.path.exists(path):
        raise FileNotFoundError(
            f"--checkpoint {path}: no such file or folder. Give a .keras file or a run "
            "folder (one with best.keras or checkpoints/)."
        )
    if os.path.isfile(path) and not path.endswith(KERAS_SUFFIX):
        raise ValueError(
            f"--checkpoint {path}: expected a .keras file or a run folder, received a "
            f"file ending in {os.path.splitext(path)[1]!r}."
        )
    return resolve(path)


def read_run_config(run_dir):
    """The :class:`~fcn_tf.config.run_config.Config` stored in a run folder's config.json."""
    from fcn_tf.config.run_config import parse_config

    path = os.path.join(run_dir, RUN_CONFIG_FILE)
    with open(path, encoding="utf-8") as f:
        return parse_config(json.load(f), base_dir=run_dir, source=path)


def backbone_of_model(model):
    """The backbone name encoded in a built model's name (``fcn8s_vgg16`` -> ``vgg16``)."""
    from fcn_tf.models import list_backbones, list_models

    name = model.name
    for arch in list_models():
        for backbone in list_backbones(arch):
            if name in (f"{arch}_{backbone}", arch):
                return backbone if name != arch else list_backbones(arch)[0]
    return None


def resolve_preprocessing(checkpoint, model=None, config=None, channels=None):
    """``(Preprocessing, source)`` for a checkpoint, and a sentence saying where it came from.

    Looked up in order: ``preprocessing.json`` of the checkpoint's run folder
    (the folder itself, or the folder holding the ``.keras`` file); the
    backbone default of ``config.model`` or of the model's name.
    """
    from fcn_tf.models import default_preprocessing
    from fcn_tf.preprocessing import Preprocessing

    run_dir = find_run_dir(checkpoint)
    if run_dir and os.path.isfile(os.path.join(run_dir, PREPROCESSING_FILE)):
        path = os.path.join(run_dir, PREPROCESSING_FILE)
        with open(path, encoding="utf-8") as f:
            preprocessing = Preprocessing.from_dict(json.load(f))
        return preprocessing.for_channels(channels or len(preprocessing.mean)), f"{path}"
    backbone = None
    if config is not None:
        from fcn_tf.models import get_model_spec

        backbone = config.model.backbone or get_model_spec(config.model.name).default_backbone
    elif model is not None:
        backbone = backbone_of_model(model)
    if backbone is None:
        raise ValueError(
            f"{checkpoint}: no preprocessing.json in a run folder next to it and the backbone "
            f"cannot be told from the model name {getattr(model, 'name', None)!r}. Keep the "
            "checkpoint inside its run folder, or give the run config."
        )
    channels = channels or (config.data.image_channels if config is not None else 3)
    return (default_preprocessing(backbone, channels),
            f"the {backbone} backbone default (no preprocessing.json found next to {checkpoint})")


# --- a model ready for raw pixels ---------------------------------------------


@dataclasses.dataclass
class InferenceModel:
    """A segmentation model that takes raw pixels in [0, 255].

    ``logits(pixels)`` maps float32 ``[B, H, W, image_channels]`` pixels to
    ``[B, H, W, K]`` logits (K = 1 for a binary model), normalisation
    included. ``info`` has ``class_names``, ``colors``, ``ignore_label``,
    ``image_channels`` and ``num_classes``.
    """

    logits: object
    info: dict
    preprocessing: object
    preprocessing_source: str
    kind: str
    path: str
    keras_model: object = None
    metadata: dict | None = None


def _class_info(num_classes, config=None):
    from fcn_tf.data.palette import default_class_names, default_colors

    if config is not None:
        data = config.data
        return {"num_classes": data.num_classes, "class_names": list(data.class_names),
                "colors": [list(c) for c in data.colors], "ignore_label": data.ignore_label,
                "image_channels": data.image_channels}
    return {"num_classes": num_classes, "class_names": default_class_names(num_classes),
            "colors": [list(c) for c in default_colors(num_classes)], "ignore_label": 255,
            "image_channels": None}


def is_saved_model(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))


def load_for_inference(path):
    """An :class:`InferenceModel` from a ``.keras`` file, a run folder or an exported SavedModel."""
    if is_saved_model(path):
        return _load_saved_model(path)
    import keras

    checkpoint = resolve_checkpoint(path)
    model = keras.models.load_model(checkpoint, compile=False)
    run_dir = find_run_dir(path)
    config = read_run_config(run_dir) if run_dir else None
    channels = int(model.input_shape[-1])
    outputs = int(model.output_shape[-1])
    info = _class_info(2 if outputs == 1 else outputs, config)
    info["image_channels"] = channels
    preprocessing, source = resolve_preprocessing(path, model, config, channels)
    mean, std = np.float32(preprocessing.mean), np.float32(preprocessing.std)

    def logits(pixels):
        x = (np.asarray(pixels, np.float32) - mean) / std
        return np.asarray(model(x, training=False), np.float32)

    return InferenceModel(logits, info, preprocessing, source, "keras", checkpoint, model)


def _load_saved_model(path):
    import tensorflow as tf

    from fcn_tf.preprocessing import Preprocessing

    meta_path = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(
            f"{path}: a SavedModel without {METADATA_FILE}; export it with "
            "python -m fcn_tf.export, which writes the class names and normalisation there."
        )
    with open(meta_path, encoding="utf-8") as f:
        metadata = json.load(f)
    loaded = tf.saved_model.load(path)
    if not hasattr(loaded, "logits"):
        raise ValueError(f"{path}: this SavedModel has no 'logits' function; re-export it "
                         "with python -m fcn_tf.export.")

    def logits(pixels):
        return loaded.logits(tf.constant(np.asarray(pixels, np.float32))).numpy()

    preprocessing = Preprocessing.from_dict(metadata["normalization"])
    info = {k: metadata[k] for k in ("num_classes", "class_names", "colors", "ignore_label",
                                     "image_channels")}
    return InferenceModel(logits, info, preprocessing, f"{meta_path} (inside the graph)",
                          "saved_model", path, metadata=metadata)
