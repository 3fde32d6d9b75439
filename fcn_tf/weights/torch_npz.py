"""``.npz`` of a PyTorch FCN state dict (wkentaro's pytorch-fcn FCN8s/16s/32s).

Keys are the reference names, ``<layer>.weight`` and ``<layer>.bias``
(``conv1_1.weight`` ... ``fc6.weight``, ``score_fr.weight``,
``score_pool4.weight``, ``upscore2.weight``, ``upscore8.weight`` ...), which
are also this package's layer names. Make one from a ``.pth`` with
``numpy.savez(out, **{k: v.numpy() for k, v in state_dict.items()})``
(``weights/README.md``).

What the mapping transposes (:func:`convert_state_dict`):

- ``Conv2d.weight`` ``(out, in, kh, kw)`` to Keras ``Conv2D`` ``(kh, kw, in, out)``:
  transpose ``(2, 3, 1, 0)``;
- ``ConvTranspose2d.weight`` ``(in, out, kh, kw)`` to Keras
  ``Conv2DTranspose`` ``(kh, kw, out, in)``: the same transpose ``(2, 3, 1, 0)``
  (both frameworks define the transposed convolution as the gradient of the
  same cross-correlation, so the kernel is not flipped);
- ``bias`` ``(out,)`` unchanged. The upscore layers have no bias.

pytorch-fcn's weights come from Caffe and take **BGR** images minus
``mean_bgr = [104.00698793, 116.66876762, 122.67891434]``; by default
``conv1_1`` is flipped so that the model takes RGB, and the result's
``preprocessing`` holds that mean in RGB order.
"""

import math
import zipfile
import zlib

import numpy as np

from fcn_tf.preprocessing import Preprocessing
from fcn_tf.weights.assign import FileWeights, model_layers
from fcn_tf.weights.errors import WeightsError
from fcn_tf.weights.limits import ReadBudget

# pytorch-fcn's input normalisation (torchfcn/datasets/voc.py), BGR.
PYTORCH_FCN_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
PARAMETERS = ("weight", "bias")
HINT = (
    "The .npz must be the state dict of the same model: pytorch-fcn FCN8s for "
    "fcn8s, FCN16s for fcn16s, FCN32s for fcn32s, with the same number of classes "
    "and width (backbone='vgg16', width_multiplier=1.0 for the published weights)."
)


def convert_parameter(array):
    """A PyTorch conv / transposed-conv weight or a bias to the Keras layout.

    4-D weights are transposed ``(2, 3, 1, 0)``; 1-D biases pass unchanged.
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"a {array.dtype} array; weights must be floating point (an integer "
                         "array would be truncated), save the float tensors")
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 1:
        return array
    raise ValueError(f"unsupported {array.ndim}-D parameter of shape {array.shape}")


def convert_state_dict(state):
    """``{"layer.weight"/"layer.bias": array}`` to ``({layer: [kernel, bias?]}, sources)``.

    Raises ``ValueError`` naming a key that is not ``<layer>.weight`` or
    ``<layer>.bias``, or a bias without its weight.
    """
    grouped = {}
    for key, array in state.items():
        layer, _, parameter = key.rpartition(".")
        if not layer or parameter not in PARAMETERS:
            raise ValueError(
                f"key {key!r} is not '<layer>.weight' or '<layer>.bias' "
                "(pytorch-fcn FCN state dicts hold only convolutions)"
            )
        try:
            grouped.setdefault(layer, {})[parameter] = convert_parameter(array)
        except ValueError as error:
            raise ValueError(f"key {key!r}: {error}") from error
    arrays, sources = {}, {}
    for layer, parameters in grouped.items():
        if "weight" not in parameters:
            raise ValueError(f"key {layer + '.bias'!r} has no matching {layer + '.weight'!r}")
        arrays[layer] = [parameters[p] for p in PARAMETERS if p in parameters]
        sources[layer] = [f"{layer}.{p}" for p in PARAMETERS if p in parameters]
    return arrays, sources


def _check_member(archive, key, path, budget):
    """Refuse an array whose ``.npy`` header declares more than its member holds or the budget.

    NumPy allocates the whole declared array before it reads a zip member, so
    the header is read and checked first (:mod:`fcn_tf.weights.limits`).
    """
    info = archive.zip.getinfo(key if key in archive.zip.namelist() else key + ".npy")
    with archive.zip.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(member)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise WeightsError(
            f"{path}: array {key!r} declares shape {shape} ({dtype}) = {nbytes:,} bytes, but its "
            f"member holds {info.file_size:,}; the file is truncated or corrupt. Nothing was "
            "allocated for it.")
    budget.take(nbytes, f"array {key!r} of shape {shape} ({dtype})")


def read_npz(path):
    """``{key: array}`` of an ``.npz``, with a clear error for anything else.

    Every array's declared size is checked before it is allocated
    (:mod:`fcn_tf.weights.limits`).
    """
    budget = ReadBudget.for_file(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            state = {}
            for key in archive.files:
                _check_member(archive, key, path, budget)
                state[key] = archive[key]
            return state
    except WeightsError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise WeightsError(
            f"not an .npz archive or truncated: {path} ({type(error).__name__}: {error}). "
            "Write it again with numpy.savez (weights/README.md)."
        ) from error


def read(path, model):
    """Read a pytorch-fcn state dict ``.npz`` into :class:`FileWeights`."""
    return file_weights(read_npz(path), model, path)


def file_weights(state, model, path):
    """A pytorch-fcn state dict ``{key: array}`` (from ``.npz`` or ``.pth``) as :class:`FileWeights`."""
    try:
        arrays, sources = convert_state_dict(state)
    except ValueError as error:
        raise WeightsError(f"{path}: {error}. {HINT}") from error
    return FileWeights(
        arrays=arrays,
        sources=sources,
        required=tuple(model_layers(model)),
        preprocessing=Preprocessing(
            mean=tuple(reversed(PYTORCH_FCN_MEAN_BGR)), std=(1.0, 1.0, 1.0)
        ),
        first_layer="conv1_1",
        channel_order="bgr",
        hint=HINT,
        layout="(in Keras layout: the file's PyTorch weight transposed (2, 3, 1, 0))",
    )
