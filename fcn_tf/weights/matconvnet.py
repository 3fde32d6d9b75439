"""MatConvNet VGG files (``imagenet-vgg-verydeep-16.mat`` / ``-19.mat``).

Layout (``/work/shared/MATCONVNET_VGG.md``): a top-level ``layers`` cell of
structs, each with ``name`` and ``type``; ``conv`` records hold ``weights``
(a 1x2 cell: kernel, bias). Records are found by their ``name`` field, never
by position, and fields by name, so both file versions load:

- old files: top-level ``normalization`` (``averageImage`` 224x224x3);
- new files: ``meta.normalization`` (``averageImage`` 1x1x3 or 3x1).

What the mapping transposes (:func:`convert_conv`):

- kernel: stored ``(kw, kh, in, out)`` (MATLAB's width-first order, as public
  TensorFlow loaders read these files), transposed ``(1, 0, 2, 3)`` to
  Keras' ``(kh, kw, in, out)``;
- bias: ``(out, 1)`` or ``(1, out)``, flattened to ``(out,)``.

``conv1_1`` ... ``conv5_x`` go to the VGG encoder's layers of the same name;
``fc6`` (7x7x512x4096) and ``fc7`` (1x1x4096x4096) go to FCN's convolutional
fc6/fc7 (and are reported unused for a model without them, e.g. fcn_deconv);
``fc8`` (ImageNet's 1000 classes) is never loaded. Inputs are RGB.
"""

import re
import zlib

import numpy as np

from fcn_tf.preprocessing import Preprocessing
from fcn_tf.weights.assign import FileWeights, model_layers
from fcn_tf.weights.errors import WeightsError

VGG_CONV = re.compile(r"^conv\d+_\d+$")
CLASSIFIER = ("fc6", "fc7")
IGNORED = {"fc8": "ImageNet classifier (1000 classes): not used for segmentation"}
HINT = (
    "Check that the file matches the model's backbone: imagenet-vgg-verydeep-16.mat "
    "for backbone='vgg16', -19.mat for 'vgg19', with width_multiplier=1.0."
)


def convert_conv(kernel, bias):
    """MatConvNet ``(kw, kh, in, out)`` kernel and bias to Keras ``[kernel, bias]``.

    Transposes the kernel's axes ``(1, 0, 2, 3)`` and flattens the bias.
    """
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim == 2:  # MATLAB drops trailing singleton dimensions.
        kernel = kernel[:, :, None, None]
    elif kernel.ndim == 3:
        kernel = kernel[..., None]
    return [kernel.transpose(1, 0, 2, 3), np.asarray(bias, dtype=np.float32).reshape(-1)]


def average_image_to_mean(average_image):
    """Reduce ``averageImage`` (HxWx3, 1x1x3, 3x1 or 3) to an RGB mean tuple."""
    values = np.asarray(average_image, dtype=np.float64)
    if values.size % 3:
        raise ValueError(f"averageImage has shape {values.shape}, not 3 channels")
    if values.ndim == 3 or values.ndim == 1:
        values = values.reshape(-1, 3)
    else:  # 3x1 or 1x3
        values = values.reshape(3, -1).T
    return tuple(float(v) for v in values.mean(axis=0))


def _unwrap(value):
    """Strip MATLAB's 1x1 cell/struct wrappers down to a record or an array."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    while (
        isinstance(value, np.ndarray)
        and value.dtype.names is not None
        and value.size == 1
    ):
        value = value.reshape(-1)[0]
    return value


def _field(record, name):
    names = record.dtype.names or ()
    if name not in names:
        return None
    return _unwrap(record[name])


def _string(value):
    value = _unwrap(value)
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)
        return "".join(str(v) for v in value) if value.dtype.kind == "U" else str(value[0])
    return str(value)


def _loadmat(path):
    import scipy.io

    with open(path, "rb") as handle:
        head = handle.read(128)
    if head.startswith(b"MATLAB 7.3"):
        raise WeightsError(
            f"{path}: a MATLAB v7.3 (HDF5) file; MatConvNet's VGG files are v5. "
            "Re-save it in MATLAB with save(..., '-v7') or get the original file."
        )
    try:
        return scipy.io.loadmat(path)
    except (scipy.io.matlab.MatReadError, ValueError, TypeError, OSError, EOFError,
            IndexError, KeyError, NotImplementedError, zlib.error, MemoryError) as error:
        raise WeightsError(
            f"not a MATLAB file or truncated: {path} ({type(error).__name__}: {error}). "
            "A saved HTML error page or an interrupted download looks like this; "
            "download the file again (weights/README.md)."
        ) from error


def read_records(path):
    """``(records, normalization)`` of a MatConvNet file: ``{name: record}`` in file order."""
    mat = _loadmat(path)
    if "layers" not in mat:
        variables = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise WeightsError(
            f"{path}: not a MatConvNet network: no 'layers' variable "
            f"(variables: {variables}). Expected imagenet-vgg-verydeep-16/19.mat."
        )
    records = {}
    for index, item in enumerate(np.asarray(mat["layers"], dtype=object).reshape(-1)):
        record = _unwrap(item)
        if getattr(record, "dtype", None) is None or record.dtype.names is None:
            raise WeightsError(
                f"{path}: layers{{{index + 1}}} is not a struct; not a MatConvNet network."
            )
        name = _field(record, "name")
        if name is None:
            raise WeightsError(f"{path}: layers{{{index + 1}}} has no 'name' field.")
        name = _string(name)
        if name in records:
            raise WeightsError(f"{path}: layer name {name!r} appears twice.")
        records[name] = record
    normalization = mat.get("normalization")
    if normalization is None and "meta" in mat:
        normalization = _field(_unwrap(mat["meta"]), "normalization")
    return records, _unwrap(normalization) if normalization is not None else None


def _conv_arrays(path, name, record):
    weights = _field(record, "weights")
    if weights is not None:
        cells = list(np.asarray(weights, dtype=object).reshape(-1))
        if len(cells) != 2:
            raise WeightsError(
                f"{path}: layer {name!r}: 'weights' holds {len(cells)} arrays, "
                "expected 2 (kernel, bias)."
            )
        kernel, bias = cells
    else:  # the oldest MatConvNet files: separate 'filters' and 'biases' fields
        kernel, bias = _field(record, "filters"), _field(record, "biases")
        if kernel is None or bias is None:
            raise WeightsError(
                f"{path}: conv layer {name!r} has neither 'weights' nor 'filters'/'biases'."
            )
    return convert_conv(_unwrap(kernel), _unwrap(bias))


def read(path, model):
    """Read a MatConvNet VGG file into a :class:`FileWeights` for ``model``."""
    records, normalization = read_records(path)
    layers = model_layers(model)
    required = tuple(n for n in layers if VGG_CONV.match(n))
    if not required:
        raise WeightsError(
            f"{path}: MatConvNet VGG weights load into a VGG encoder (layers 'conv1_1' "
            f"...), but model '{model.name}' has none. Build a model with a VGG "
            "backbone: fcn8s, fcn16s, fcn32s or fcn_deconv with backbone='vgg16'/'vgg19'."
        )
    arrays, unused = {}, {}
    for name, record in records.items():
        kind = _string(_field(record, "type")) if _field(record, "type") is not None else ""
        if kind != "conv":
            continue
        if name in IGNORED:
            unused[name] = IGNORED[name]
            continue
        arrays[name] = _conv_arrays(path, name, record)
    preprocessing = None
    if normalization is not None and _field(normalization, "averageImage") is not None:
        try:
            mean = average_image_to_mean(_field(normalization, "averageImage"))
        except ValueError as error:
            raise WeightsError(f"{path}: normalization: {error}.") from error
        preprocessing = Preprocessing(mean=mean, std=(1.0, 1.0, 1.0))
    return FileWeights(
        arrays=arrays,
        required=required,
        optional=frozenset(CLASSIFIER),
        unused=unused,
        preprocessing=preprocessing,
        first_layer="conv1_1",
        channel_order="rgb",
        hint=HINT,
        layout="(in Keras layout: the file's (kw, kh, in, out) transposed (1, 0, 2, 3))",
    )
