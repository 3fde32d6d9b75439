"""Writers of small weight files in the real on-disk layouts, for the weight tests.

Nothing here downloads anything: the tests write MatConvNet ``.mat`` files
(``/work/shared/MATCONVNET_VGG.md``) with scipy and legacy Keras ``.h5``
files with h5py, with random weights and (usually) a reduced VGG width.
"""

import h5py
import numpy as np
import scipy.io

from fcn_tf.backbones.vgg import VGG_FILTERS, VGG_REPEATS, scaled

MEAN_RGB = (123.68, 116.779, 103.939)


def vgg_file_layers(variant, width_multiplier=1.0, classes=1000):
    """The MatConvNet VGG layer sequence: ``[(name, type, kernel shape or None)]``.

    Kernel shapes are in the file's ``(kw, kh, in, out)`` order.
    """
    sequence, channels = [], 3
    for block, (count, filters) in enumerate(zip(VGG_REPEATS[variant], VGG_FILTERS), start=1):
        out = scaled(filters, width_multiplier)
        for index in range(1, count + 1):
            sequence.append((f"conv{block}_{index}", "conv", (3, 3, channels, out)))
            sequence.append((f"relu{block}_{index}", "relu", None))
            channels = out
        sequence.append((f"pool{block}", "pool", None))
    fc = scaled(4096, width_multiplier)
    sequence += [
        ("fc6", "conv", (7, 7, channels, fc)), ("relu6", "relu", None),
        ("fc7", "conv", (1, 1, fc, fc)), ("relu7", "relu", None),
        ("fc8", "conv", (1, 1, fc, classes)), ("prob", "softmax", None),
    ]
    return sequence


def _cell(*items):
    cell = np.empty((1, len(items)), dtype=object)
    for index, item in enumerate(items):
        cell[0, index] = item
    return cell


def _record(name, kind, arrays, version):
    """One layer struct; the two versions order the fields differently."""
    if kind == "conv":
        kernel, bias = arrays
        fields = {
            "name": name, "type": "conv", "weights": _cell(kernel, bias),
            "stride": np.array([[1.0, 1.0]]), "pad": np.array([[1.0, 1.0, 1.0, 1.0]]),
        }
    elif kind == "pool":
        fields = {
            "name": name, "type": "pool", "method": "max", "pool": np.array([[2.0, 2.0]]),
            "stride": np.array([[2.0, 2.0]]), "pad": np.array([[0.0, 0.0, 0.0, 1.0]]),
        }
    else:
        fields = {"name": name, "type": kind}
        if kind == "relu" and version == "new":
            fields["leak"] = 0.0
    if version == "new":  # the newer files put type, weights and geometry first
        fields = dict(sorted(fields.items(), key=lambda kv: kv[0] == "name"))
    return fields


def write_matconvnet_vgg(
    path,
    variant="vgg16",
    width_multiplier=1 / 16,
    version="old",
    rng=None,
    *,
    kernels=None,
    mean=MEAN_RGB,
    average_image_shape=None,
    classes=1000,
    skip=(),
):
    """Write a MatConvNet VGG ``.mat`` in the real layout; return its conv arrays.

    Args:
        path: where to write.
        variant: ``"vgg16"`` or ``"vgg19"``.
        width_multiplier: scales every channel count (1.0 gives real VGG shapes).
        version: ``"old"`` (top-level ``normalization`` with a 224x224x3
            ``averageImage``, biases ``(out, 1)``) or ``"new"`` (``meta.normalization``
            with a 1x1x3 ``averageImage``, biases ``(1, out)``, other field order).
        rng: a ``numpy.random.Generator`` for the random weights.
        kernels: ``{name: kernel}`` overriding random kernels (file layout).
        mean: the RGB mean stored in ``averageImage``.
        average_image_shape: override the ``averageImage`` shape, e.g. ``(3, 1)``.
        classes: fc8's outputs.
        skip: layer names left out of the file (to make a broken one).

    Returns:
        ``{name: (kernel (kw, kh, in, out), bias (out,))}`` as written.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    kernels = kernels or {}
    written, records = {}, []
    for name, kind, shape in vgg_file_layers(variant, width_multiplier, classes):
        if name in skip:
            continue
        arrays = None
        if kind == "conv":
            fan_in = shape[0] * shape[1] * shape[2]
            kernel = kernels.get(name)
            if kernel is None:
                kernel = rng.normal(0, np.sqrt(2 / fan_in), shape).astype(np.float32)
            bias = rng.normal(0, 0.1, shape[3]).astype(np.float32)
            written[name] = (kernel, bias)
            stored_bias = bias[:, None] if version == "old" else bias[None, :]
            arrays = (kernel, stored_bias)
        records.append(_record(name, kind, arrays, version))
    layers = np.empty((1, len(records)), dtype=object)
    for index, record in enumerate(records):
        layers[0, index] = record
    if average_image_shape is None:
        average_image_shape = (224, 224, 3) if version == "old" else (1, 1, 3)
    if len(average_image_shape) == 3:
        average = np.broadcast_to(np.float32(mean), average_image_shape).copy()
    else:  # (3, 1) or (1, 3)
        average = np.float32(mean).reshape(average_image_shape)
    normalization = {
        "averageImage": average, "imageSize": np.array([[224.0, 224.0, 3.0]]),
        "interpolation": "bilinear", "keepAspect": 1.0, "border": np.array([[32.0, 32.0]]),
    }
    classes_struct = {"name": _cell("n01440764"), "description": _cell("tench")}
    contents = {"layers": layers}
    if version == "old":
        contents.update(normalization=normalization, classes=classes_struct)
    else:
        contents["meta"] = {"normalization": normalization, "classes": classes_struct}
    scipy.io.savemat(path, contents)
    return written


def write_legacy_keras_h5(path, layers, *, model_weights=False):
    """Write ``[(layer name, [(weight name, array)])]`` in Keras 2's legacy h5 layout.

    The layout ``keras.applications`` downloads use: root attributes
    ``layer_names``/``backend``/``keras_version``; one group per layer with
    ``weight_names``; datasets at ``<layer>/<layer>/kernel:0``. With
    ``model_weights=True`` it is nested under ``model_weights/`` as in a
    whole-model ``.h5``.
    """
    with h5py.File(path, "w") as handle:
        root = handle.create_group("model_weights") if model_weights else handle
        root.attrs["layer_names"] = np.array([n.encode("utf8") for n, _ in layers])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name, weights in layers:
            group = root.create_group(name)
            group.attrs["weight_names"] = np.array(
                [w.encode("utf8") for w, _ in weights], dtype="S"
            ) if weights else np.zeros((0,), dtype="S1")
            for weight_name, array in weights:
                group.create_dataset(weight_name, data=np.asarray(array))


def keras_model_as_legacy_layers(model, rename=None):
    """A Keras model's layers as ``[(name, [(weight name, array)])]`` for :func:`write_legacy_keras_h5`."""
    rename = rename or {}
    layers = []
    for layer in model.layers:
        name = rename.get(layer.name, layer.name)
        layers.append(
            (name, [(f"{name}/{v.name}:0", v.numpy()) for v in layer.weights])
        )
    return layers


def vgg_legacy_layers(variant="vgg16", width_multiplier=1 / 16, rng=None, include_top=False):
    """Random keras.applications-style VGG layers ``block{b}_conv{i}`` (+ fc1/fc2/predictions)."""
    rng = np.random.default_rng(0) if rng is None else rng
    layers, channels = [("input_1", [])], 3
    for block, (count, filters) in enumerate(zip(VGG_REPEATS[variant], VGG_FILTERS), start=1):
        out = scaled(filters, width_multiplier)
        for index in range(1, count + 1):
            name = f"block{block}_conv{index}"
            layers.append((name, [
                (f"{name}/kernel:0", rng.normal(0, np.sqrt(2 / (9 * channels)), (3, 3, channels, out)).astype(np.float32)),
                (f"{name}/bias:0", rng.normal(0, 0.1, out).astype(np.float32)),
            ]))
            channels = out
        layers.append((f"block{block}_pool", []))
    if include_top:
        fc = scaled(4096, width_multiplier)
        layers.append(("flatten", []))
        for name, (rows, cols) in (("fc1", (49 * channels, fc)), ("fc2", (fc, fc)), ("predictions", (fc, 1000))):
            layers.append((name, [
                (f"{name}/kernel:0", rng.normal(0, np.sqrt(2 / rows), (rows, cols)).astype(np.float32)),
                (f"{name}/bias:0", rng.normal(0, 0.1, cols).astype(np.float32)),
            ]))
    return layers
