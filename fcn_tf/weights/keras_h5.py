"""``keras.applications`` weight files: VGG16, VGG19, MobileNetV2, Xception.

Two layouts are read with h5py:

- **legacy** (Keras 2, what ``keras.applications`` downloads, e.g.
  ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``): the root, or its
  ``model_weights`` group for a whole saved model, has the attribute
  ``layer_names``; each layer's group has ``weight_names`` giving its arrays
  in order.
- **Keras 3** ``.weights.h5`` (``model.save_weights``): arrays sit under
  ``layers/<class name>_<k>/vars/<i>``, keyed by layer *class* and order, not
  by layer name. The file's network is recognised from its classes; the
  matching ``keras.applications`` model is built without weights only to
  learn which ``conv2d_<k>`` is which named layer.

What each backbone's file is (names, how it is recognised, which layers it
covers, its channel order) is its row's :class:`~fcn_tf.backbones.ImagenetWeights`
in :data:`fcn_tf.backbones.BACKBONE_TABLE`; the row's ``mapping`` names one of
these pure functions from ``{file layer: [arrays]}`` (file order):

- :func:`map_vgg`: ``block{b}_conv{i}`` to ``conv{b}_{i}`` unchanged (Keras
  kernels are already ``(kh, kw, in, out)``); with the top, Dense ``fc1``
  ``(7*7*512, 4096)`` reshaped to fc6's ``(7, 7, 512, 4096)`` (Keras' Flatten
  of a channels-last ``7x7x512`` map is row-major over ``(h, w, c)``) and
  ``fc2`` to fc7's ``(1, 1, 4096, 4096)``.
  Keras' VGG weights are Caffe's: BGR inputs, so the row's channel order
  is ``bgr`` and ``conv1_1`` is flipped to take RGB.
- :func:`map_by_name` (MobileNetV2): by name; the row's ``unused`` layers
  (``Conv_1``, ``Conv_1_bn``, not part of DeepLab's encoder, and
  ``predictions``) left out.
- :func:`map_xception`: by name; the unnamed residual convolutions and their
  BatchNorms (``conv2d``, ``conv2d_1`` ... in file order) become
  ``block{2,3,4,13}_residual_conv``/``_bn``.

Each leaves out the row's ``unused`` layers (by default ``predictions``).
"""

import collections
import re

import numpy as np

from fcn_tf.backbones import BACKBONE_TABLE, IMAGENET, told_by_layers
from fcn_tf.preprocessing import Preprocessing
from fcn_tf.weights.assign import FileWeights, model_layers
from fcn_tf.weights.errors import WeightsError
from fcn_tf.weights.limits import ReadBudget

XCEPTION_RESIDUAL_BLOCKS = (2, 3, 4, 13)
UNNAMED_CONV = re.compile(r"^conv2d(_\d+)?$")
UNNAMED_BN = re.compile(r"^batch_normalization(_\d+)?$")
VGG_BLOCK_CONV = re.compile(r"^block(\d+)_conv(\d+)$")


def _applications():
    """``{keras.applications name: backbone}``, e.g. ``{"VGG16": "vgg16"}``."""
    return {weights.application[0]: name for name, weights in IMAGENET.items()}


def _supported():
    return ", ".join(_applications())


HINT = (
    "Check that the file is the keras.applications network of the model's backbone, "
    f"at full width ({', '.join(f'{app} for {name}' for app, name in _applications().items())}; "
    "VGG at width_multiplier=1.0, MobileNetV2 alpha=1.0)."
)


# ---------------------------------------------------------------- mappings


def map_vgg(entries, skipped):
    """keras.applications VGG ``{name: arrays}`` to ``(arrays, sources, unused)``.

    Renames ``block{b}_conv{i}`` to ``conv{b}_{i}``; reshapes Dense ``fc1`` to
    a 7x7 convolution kernel ``fc6`` and ``fc2`` to a 1x1 ``fc7``; leaves out
    the ``skipped`` layers (``{name: reason}``).
    """
    arrays, sources, unused = {}, {}, {}
    for name, values in entries.items():
        match = VGG_BLOCK_CONV.match(name)
        if match:
            target = f"conv{match.group(1)}_{match.group(2)}"
            arrays[target], sources[target] = list(values), name
        elif name in ("fc1", "fc2"):
            kernel, bias = values
            size = 7 if name == "fc1" else 1
            if kernel.ndim != 2 or kernel.shape[0] % (size * size):
                raise ValueError(
                    f"layer {name!r} kernel: expected a Dense kernel with "
                    f"{size}*{size}*channels rows, received shape {kernel.shape}"
                )
            target = "fc6" if name == "fc1" else "fc7"
            channels = kernel.shape[0] // (size * size)
            arrays[target] = [kernel.reshape(size, size, channels, kernel.shape[1]), bias]
            sources[target] = name
        elif name in skipped:
            unused[name] = skipped[name]
        else:
            arrays[name], sources[name] = list(values), name
    return arrays, sources, unused


def map_by_name(entries, skipped):
    """Each file layer onto the model's layer of that name, but ``skipped`` (``{name: reason}``)."""
    arrays = {n: list(v) for n, v in entries.items() if n not in skipped}
    unused = {n: reason for n, reason in skipped.items() if n in entries}
    return arrays, {n: n for n in arrays}, unused


def map_xception(entries, skipped):
    """keras.applications Xception: by name, plus the unnamed residual convs in order.

    The four unnamed ``Conv2D``/``BatchNormalization`` layers, in file order,
    are the residual branches of blocks 2, 3, 4 and 13; the ``skipped``
    layers (``{name: reason}``) are left out.
    """
    arrays, sources, unused = {}, {}, {}
    convs = [n for n in entries if UNNAMED_CONV.match(n)]
    norms = [n for n in entries if UNNAMED_BN.match(n)]
    for found, suffix in ((convs, "conv"), (norms, "bn")):
        if len(found) != len(XCEPTION_RESIDUAL_BLOCKS):
            raise ValueError(
                f"expected {len(XCEPTION_RESIDUAL_BLOCKS)} unnamed residual "
                f"{'Conv2D' if suffix == 'conv' else 'BatchNormalization'} layers "
                f"(blocks 2, 3, 4, 13), found {len(found)}: {found}"
            )
        for name, block in zip(found, XCEPTION_RESIDUAL_BLOCKS):
            target = f"block{block}_residual_{suffix}"
            arrays[target], sources[target] = list(entries[name]), name
    for name, values in entries.items():
        if name in convs or name in norms:
            continue
        if name in skipped:
            unused[name] = skipped[name]
        else:
            arrays[name], sources[name] = list(values), name
    return arrays, sources, unused


# How a file's layers map onto the model's: the ``mapping`` of an ImagenetWeights row.
MAPPINGS = {
    "by_name": map_by_name,
    "vgg": map_vgg,
    "xception": map_xception,
}

# ------------------------------------------------------------------ reading


def architecture_of(names):
    """The backbone whose keras.applications network has these (legacy) layer names, or ``None``."""
    return told_by_layers(names, {name: w.file_layers for name, w in IMAGENET.items()})


def _keras3_architecture(keys):
    """The backbone whose ``keras3_counts`` a Keras 3 file's weighted layers match, or ``None``."""
    counts = collections.Counter(re.sub(r"_\d+$", "", key) for key in keys)
    counts.pop("dense", None)  # the top's, when saved with include_top=True
    for name, weights in IMAGENET.items():
        if counts == {_snake_case(cls): n for cls, n in weights.keras3_counts.items()}:
            return name
    return None


def _decode(values):
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _array(dataset, budget):
    """A dataset's values, read once its declared size fits ``budget`` (:mod:`.limits`)."""
    budget.take(dataset.size * dataset.dtype.itemsize,
                f"dataset {dataset.name!r} of shape {dataset.shape} ({dataset.dtype})")
    return np.asarray(dataset)


def read_legacy(root, budget):
    """``{layer name: [arrays]}`` from a legacy Keras h5 group with ``layer_names``."""
    entries = {}
    for name in _decode(root.attrs["layer_names"]):
        group = root[name]
        weight_names = _decode(group.attrs.get("weight_names", []))
        if weight_names:
            entries[name] = [_array(group[w], budget) for w in weight_names]
    return entries


def _snake_case(name):
    """Keras' ``to_snake_case``: the key prefix of a layer class in a .weights.h5."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _class_order_keys(model):
    """``{file key: layer name}`` of ``model``'s layers as Keras 3 saves them."""
    counts, keys = {}, {}
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        count = counts.get(base, 0)
        counts[base] = count + 1
        keys[base if count == 0 else f"{base}_{count}"] = layer.name
    return keys


def reference_model(architecture):
    """The backbone's keras.applications network, without weights and without the top."""
    import keras

    application, options = IMAGENET[architecture].application
    return getattr(keras.applications, application)(weights=None, include_top=False, **options)


def read_keras3(path, root, budget):
    """``(architecture, {layer name: [arrays]})`` of a Keras 3 ``.weights.h5``."""
    groups = {}
    for key, group in root["layers"].items():
        if "vars" in group and len(group["vars"]):
            variables = group["vars"]
            groups[key] = [_array(variables[i], budget) for i in sorted(variables, key=int)]
    architecture = _keras3_architecture(groups)
    if architecture is None:
        raise WeightsError(
            f"{path}: a Keras 3 weights file of a network this loader does not know "
            f"(weighted layers: {', '.join(sorted(groups)[:8])} ...). Supported: "
            f"keras.applications {_supported()}. For weights of "
            "this package's own models, save and load a .keras checkpoint instead."
        )
    keys = _class_order_keys(reference_model(architecture))
    dense = [k for k in groups if re.match(r"^dense(_\d+)?$", k)]
    dense.sort(key=lambda k: int(k.rsplit("_", 1)[1]) if "_" in k else 0)
    for key, name in zip(dense, IMAGENET[architecture].top_dense):
        keys[key] = name
    unknown = sorted(k for k in groups if k not in keys)
    if unknown:
        raise WeightsError(
            f"{path}: entries {unknown[:8]} do not belong to keras.applications "
            f"{architecture}; the file is of another network. {HINT}"
        )
    ordered = sorted(groups, key=lambda k: list(keys).index(k))
    return architecture, {keys[k]: groups[k] for k in ordered}


def read(path, model):
    """Read a keras.applications ``.h5``/``.weights.h5`` into :class:`FileWeights`."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise WeightsError(
            f"not an HDF5 file or truncated: {path} ({error}). Download the file "
            "again (weights/README.md)."
        ) from error
    budget = ReadBudget.for_file(path)
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" in root.attrs:
            entries = read_legacy(root, budget)
            architecture = architecture_of(entries)
        elif "layers" in root:
            architecture, entries = read_keras3(path, root, budget)
        else:
            raise WeightsError(
                f"{path}: an HDF5 file but not Keras weights (no 'layer_names' "
                "attribute and no 'layers' group)."
            )
    if architecture is None:
        raise WeightsError(
            f"{path}: not a keras.applications {_supported()} file "
            f"(layers: {', '.join(list(entries)[:8])} ...)."
        )
    weights = IMAGENET[architecture]
    try:
        arrays, sources, unused = MAPPINGS[weights.mapping](entries, weights.unused)
    except ValueError as error:
        raise WeightsError(f"{path}: {error}. {HINT}") from error
    pattern = re.compile(weights.layers)
    required = tuple(n for n in model_layers(model) if pattern.match(n))
    if not required:
        raise WeightsError(
            f"{path}: a keras.applications {architecture} file, but model "
            f"'{model.name}' has no {architecture} layers. {HINT}"
        )
    return FileWeights(
        arrays=arrays,
        sources=sources,
        required=required,
        optional=frozenset({"fc6", "fc7"}),
        unused=unused,
        preprocessing=Preprocessing.preset(BACKBONE_TABLE[architecture].preprocessing),
        first_layer=weights.first_layer,
        channel_order=weights.channel_order,
        hint=HINT,
    )
