"""Loading a weights file into a model: find its format, read it, check it, assign it.

:func:`load_weights` is the package's one entry point for every format (the
table is in :mod:`fcn_tf.weights`); :func:`sniff_format` tells the format
from a file's first bytes, else its suffix. Each format's reader is the
module named after it, imported only when a file of that format is loaded;
:func:`fcn_tf.weights.assign.assign_weights` checks and writes the arrays.
"""

import dataclasses
import importlib
import os

from fcn_tf.weights.assign import assign_weights, flip_input_channels
from fcn_tf.weights.errors import WeightsError

MAGIC_MATLAB_V5 = b"MATLAB 5.0 MAT-file"
MAGIC_HDF5 = b"\x89HDF\r\n\x1a\n"
MAGIC_ZIP = b"PK\x03\x04"
# torch.save before 1.6: a pickle of 0x1950a86a20f9469cfc6c (LONG1, 10 bytes) first.
MAGIC_TORCH_LEGACY = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")

FORMATS = ("matconvnet", "keras_h5", "torch_npz", "keras_checkpoint", "torch_pth")
SUFFIXES = {
    ".mat": "matconvnet",
    ".h5": "keras_h5",
    ".hdf5": "keras_h5",
    ".npz": "torch_npz",
    ".keras": "keras_checkpoint",
    ".pth": "torch_pth",
    ".pt": "torch_pth",
}
CHANNEL_ORDERS = ("rgb", "bgr")
IMAGENET = "imagenet"


@dataclasses.dataclass(frozen=True)
class LoadedWeights:
    """What :func:`load_weights` did.

    Attributes:
        path: the file, as given.
        format: one of ``"matconvnet"``, ``"keras_h5"``, ``"torch_npz"``,
            ``"keras_checkpoint"``, ``"torch_pth"``.
        loaded: names of the model's layers whose weights were set, in model order.
        untouched: names of the model's layers that have weights and kept them
            (e.g. ``score_fr`` after loading an ImageNet VGG).
        unused: ``{file entry: reason}`` for what the file holds and the model
            did not take (``fc8``: ImageNet classes; ``fc6``/``fc7`` for a model
            without them; ``Conv_1``/``predictions`` of MobileNetV2 ...).
        preprocessing: the :class:`~fcn_tf.preprocessing.Preprocessing` the
            weights were trained with (for a MatConvNet file the mean stored
            in the file), or ``None`` when the file does not say.
        channel_order: the input channel order the file's first convolution
            expects (``"rgb"``/``"bgr"``); ``"bgr"`` weights were converted so
            that the model takes RGB. ``None`` when the file has no such layer.
    """

    path: str
    format: str
    loaded: tuple
    untouched: tuple
    unused: dict
    preprocessing: object = None
    channel_order: object = None


def sniff_format(path):
    """The format of ``path`` from its first bytes, else from its suffix.

    Returns one of :data:`FORMATS`. Raises :class:`WeightsError` for a missing
    file or a file neither its content nor its name identifies.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightsError(
            f"Weights file not found: {path}. Nothing is downloaded at run time; "
            "see weights/README.md for where to get the files and where to put them."
        )
    if os.path.isdir(path):
        raise WeightsError(f"{path}: is a directory, expected a weights file.")
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: not a regular file (a pipe, socket or device); expected a "
                           "weights file.")
    with open(path, "rb") as handle:
        head = handle.read(520)
    if not head:
        raise WeightsError(f"{path}: an empty file (0 bytes), expected a weights file. Copy or "
                           "download it again (weights/README.md).")
    if head.startswith(MAGIC_MATLAB_V5) or head.startswith(b"MATLAB 7.3"):
        return "matconvnet"
    if head.startswith(MAGIC_HDF5):
        return "keras_h5"
    if head[:1] == b"\x80" and head[2:14] == MAGIC_TORCH_LEGACY:
        return "torch_pth"
    if head.startswith(MAGIC_ZIP):
        # Both .npz and .keras are zip archives: the archive says which.
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        if "config.json" in names:
            return "keras_checkpoint"
        if any(name.count("/") == 1 and name.endswith("/data.pkl") for name in names):
            return "torch_pth"
        if names and all(name.endswith(".npy") for name in names):
            return "torch_npz"
    suffix = _suffix(path)
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    raise WeightsError(
        f"{path}: unknown weights format (suffix {suffix or 'none'!r}, and the "
        f"content is not recognised). Supported: {', '.join(sorted(SUFFIXES))} "
        "(MatConvNet .mat, keras.applications .h5/.weights.h5, pytorch-fcn .npz, "
        "this package's .keras, PyTorch .pth/.pt state dicts)."
    )


def _suffix(path):
    name = os.path.basename(path).lower()
    if name.endswith(".weights.h5"):
        return ".h5"
    return os.path.splitext(name)[1]


def load_weights(model, path, *, channel_order=None, strict=True):
    """Load pretrained weights from ``path`` into ``model``, choosing the format by file.

    Layers are matched by name (the file's own layer names, mapped to this
    package's), and every array's shape is checked against the model before
    anything is written: on any error the model is left unchanged.

    Args:
        model: a model from :func:`fcn_tf.build_model` (or any Keras model
            with the same layer names).
        path: ``"imagenet"``: the backbone's ``keras.applications`` ImageNet
            file (VGG16/VGG19 with ``fc1``/``fc2`` as ``fc6``/``fc7`` for
            FCN, MobileNetV2 alpha 1.0, Xception), taken from
            ``$FCN_TF_WEIGHTS_DIR``, the Keras cache or downloaded into it
            on first use (:mod:`fcn_tf.weights.imagenet`). Or a file:
            a MatConvNet ``.mat`` (``imagenet-vgg-verydeep-16.mat`` /
            ``-19.mat``), a ``keras.applications`` ``.h5`` / ``.weights.h5``
            (VGG16, VGG19, MobileNetV2, Xception), a ``.npz`` of a pytorch-fcn
            FCN-8s/16s/32s state dict, a ``.keras`` checkpoint of this package,
            or a PyTorch ``.pth`` / ``.pt`` (pytorch-fcn FCN, milesial U-Net,
            bubbliiiing DeepLabV3+ MobileNetV2; read without PyTorch, see
            :func:`fcn_tf.from_pytorch`).
            The format is read from the file's first bytes, then its suffix.
        channel_order: ``"rgb"`` or ``"bgr"``: the channel order the file's
            first convolution was trained on. ``None`` takes the format's
            convention: MatConvNet ``rgb``; ``keras.applications`` VGG ``bgr``
            (Caffe mode), MobileNetV2/Xception ``rgb``; pytorch-fcn ``.npz``
            and ``.pth`` ``bgr``; ``.keras`` ``rgb``; U-Net and DeepLabV3+
            ``.pth`` ``rgb``. BGR kernels are flipped on load, so
            the model always takes RGB images.
        strict: if ``True`` (default), a layer the file has and the model
            lacks, or a layer the format must provide and the file lacks, is
            an error. ``False`` loads the layers both have (shapes are still
            checked) and reports the rest in ``unused``/``untouched``: e.g.
            an FCN-32s checkpoint into FCN-16s, as in the paper's staged training.

    Returns:
        :class:`LoadedWeights`; its ``preprocessing`` is the normalisation the
        weights expect (for a ``.mat``, the RGB mean stored in the file).

    Raises:
        WeightsError: a missing, truncated or foreign file, a file of another
            network (VGG19 into VGG16), or missing, unexpected or mis-shaped
            layers. The message names the file, the layer, the expected and
            the received shape.

    Example:
        >>> import fcn_tf  # doctest: +SKIP
        >>> model = fcn_tf.build_model("fcn8s", 21)  # doctest: +SKIP
        >>> result = fcn_tf.load_weights(model, "weights/imagenet-vgg-verydeep-16.mat")  # doctest: +SKIP
        >>> result.preprocessing.mean  # doctest: +SKIP
        (123.68, 116.779, 103.939)
    """
    _check_arguments(model, path)
    if channel_order is not None and channel_order not in CHANNEL_ORDERS:
        raise WeightsError(
            f"channel_order must be 'rgb', 'bgr' or None, received {channel_order!r}."
        )
    if isinstance(path, str) and path == IMAGENET:
        # The backbone's keras.applications file, from $FCN_TF_WEIGHTS_DIR, the
        # Keras cache or a download (fcn_tf.weights.imagenet).
        path = importlib.import_module("fcn_tf.weights.imagenet").imagenet_path(model)
    path = os.fspath(path)
    kind = sniff_format(path)
    # Each format's module is named after it and imported only when needed.
    reader = importlib.import_module(f"fcn_tf.weights.{kind}")
    file_weights = reader.read(path, model)
    order = channel_order or file_weights.channel_order
    if order == "bgr":
        flip_input_channels(file_weights, path)
    loaded, untouched, unused = assign_weights(
        model, file_weights, path, strict=strict
    )
    return LoadedWeights(
        path=path,
        format=kind,
        loaded=loaded,
        untouched=untouched,
        unused=unused,
        preprocessing=file_weights.preprocessing,
        channel_order=order if file_weights.first_layer else None,
    )


def _check_arguments(model, path):
    """Refuse a ``model`` or ``path`` of the wrong kind, naming the parameter."""
    if not hasattr(model, "layers") or not hasattr(model, "get_layer"):
        raise WeightsError(
            f"load_weights: model must be a Keras model (e.g. from fcn_tf.build_model), "
            f"received {type(model).__name__}."
        )
    if not isinstance(path, (str, os.PathLike)):
        raise WeightsError(
            f"load_weights: path must be a weights file path or {IMAGENET!r}, received "
            f"{path!r} ({type(path).__name__})."
        )
    if not os.fspath(path):
        raise WeightsError(
            f"load_weights: path is an empty string; give a weights file path or {IMAGENET!r}."
        )


__all__ = ["CHANNEL_ORDERS", "FORMATS", "IMAGENET", "LoadedWeights", "SUFFIXES", "load_weights",
           "sniff_format"]
