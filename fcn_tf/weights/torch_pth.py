"""``.pth`` / ``.pt`` PyTorch state dicts, read without PyTorch, by layout.

The file is read by :mod:`.torch_pickle` (no code from it runs), the state
dict found (also inside a checkpoint dict), and its layout recognised by a
key only that layout has (:data:`LAYOUTS`):

==========================================  ==================  =======================
Layout (signature key)                      Model               Mapping
==========================================  ==================  =======================
bubbliiiing/deeplabv3-plus-pytorch          ``deeplabv3plus``   :mod:`.torch_deeplab`
(``aspp.conv_cat.0.weight``)                (``bubbliiiing``)
milesial/Pytorch-UNet                       ``unet``            :mod:`.torch_unet`
(``inc.double_conv.0.weight``)
wkentaro/pytorch-fcn FCN8s/16s/32s          ``fcn8s/16s/32s``   :mod:`.torch_npz`
(``conv1_1.weight``, ``score_fr.weight``)
==========================================  ==================  =======================

Every key of the state dict must be taken by the mapping (BatchNorm's
``num_batches_tracked`` counters are reported as unused); the arrays then
go through :func:`fcn_tf.weights.assign.assign_weights`, which checks every
name and shape before it writes anything.
"""

import dataclasses

from fcn_tf.preprocessing import Preprocessing
from fcn_tf.weights import torch_deeplab, torch_npz, torch_unet
from fcn_tf.weights.assign import FileWeights, model_layers
from fcn_tf.weights.errors import WeightsError
from fcn_tf.weights.torch_layout import MappingError, convert, unused_counters
from fcn_tf.weights.torch_pickle import read_state_dict

# What the DeepLabV3+ and U-Net code read here feed their networks: image / 255.
IMAGE_OVER_255 = Preprocessing.preset("unit", 3)

KERAS_LAYOUT = (
    "(in Keras layout: the file's PyTorch weight transposed; see fcn_tf.weights.torch_layout)"
)


def _mapped(state, rows, path, hint, **settings):
    """Convert ``state`` by ``rows``; every key must be taken by a row."""
    try:
        arrays, sources, leftover = convert(state, rows)
    except MappingError as error:
        raise WeightsError(f"{path}: {error}. {hint}") from error
    if leftover:
        shown = ", ".join(repr(k) for k in leftover[:8])
        more = f" ... ({len(leftover) - 8} more)" if len(leftover) > 8 else ""
        raise WeightsError(
            f"{path}: the state dict has entries this layout does not have: {shown}{more}. {hint}"
        )
    return FileWeights(arrays=arrays, sources=sources, unused=unused_counters(state), hint=hint,
                       layout=KERAS_LAYOUT, **settings)


def _deeplab(state, model, path):
    problem = torch_deeplab.model_problem(model)
    if problem:
        raise WeightsError(
            f"{path}: a bubbliiiing DeepLabV3+ state dict, but {problem}. {torch_deeplab.HINT}"
        )
    rates = torch_deeplab.model_rates(model_layers(model))
    return _mapped(
        state, torch_deeplab.rows(state, rates), path, torch_deeplab.HINT,
        required=tuple(model_layers(model)),
        preprocessing=IMAGE_OVER_255,
        first_layer="Conv1",
        channel_order="rgb",
    )


def _unet(state, model, path):
    layers = model_layers(model)
    if "enc0_bn1" not in layers:
        raise WeightsError(
            f"{path}: a U-Net state dict with BatchNorm, but the model '{model.name}' is not "
            f"a U-Net with batch_norm=True. {torch_unet.HINT}"
        )
    try:
        rows = torch_unet.rows(state)
    except MappingError as error:
        raise WeightsError(f"{path}: {error}. {torch_unet.HINT}") from error
    return _mapped(
        state, rows, path, torch_unet.HINT,
        required=tuple(layers),
        preprocessing=IMAGE_OVER_255,
        first_layer="enc0_conv1",
        channel_order="rgb",
    )


def _fcn(state, model, path):
    return torch_npz.file_weights(state, model, path)


@dataclasses.dataclass(frozen=True)
class Layout:
    """A PyTorch code base whose state dicts load: how to know them, into what, how."""

    name: str
    signature: tuple
    models: tuple
    file_weights: object

    def matches(self, state):
        return all(key in state for key in self.signature)


LAYOUTS = (
    Layout(
        "bubbliiiing/deeplabv3-plus-pytorch DeepLabV3+ MobileNetV2",
        (torch_deeplab.SIGNATURE,), ("deeplabv3plus",), _deeplab,
    ),
    Layout("milesial/Pytorch-UNet U-Net", (torch_unet.SIGNATURE,), ("unet",), _unet),
    Layout(
        "wkentaro/pytorch-fcn FCN", ("conv1_1.weight", "score_fr.weight"),
        ("fcn8s", "fcn16s", "fcn32s"), _fcn,
    ),
)


def detect_layout(state, path):
    """The :class:`Layout` of ``state``; :class:`WeightsError` listing the known ones otherwise."""
    for layout in LAYOUTS:
        if layout.matches(state):
            return layout
    keys = ", ".join(repr(k) for k in list(state)[:6])
    known = "; ".join(f"{lay.name} ({', '.join(map(repr, lay.signature))})" for lay in LAYOUTS)
    raise WeightsError(
        f"{path}: a PyTorch state dict of an unknown layout (first keys: {keys}). "
        f"Known layouts and a key each has: {known}."
    )


def read(path, model):
    """Read a ``.pth``/``.pt`` state dict into :class:`FileWeights` for ``model``."""
    state = read_state_dict(path)
    return detect_layout(state, path).file_weights(state, model, path)
