"""The one place where arrays read from a file are written into a model.

Every format reader returns a :class:`FileWeights`: the file's arrays already
mapped to this package's layer names and Keras layouts. :func:`assign_weights`
then checks, before it writes anything, that every layer exists, that the
number of arrays matches the layer's weights, and that every shape equals the
model's; the first problem raises a :class:`~fcn_tf.weights.WeightsError` like

    imagenet-vgg-verydeep-19.mat: layer 'conv1_1' kernel: expected shape
    (3, 3, 3, 64) for this model, received (3, 3, 3, 32) in the file.
"""

import dataclasses

import keras
import numpy as np

from fcn_tf.weights.errors import WeightsError


@dataclasses.dataclass
class FileWeights:
    """A file's weights, mapped to this package's names and Keras layouts.

    Attributes:
        arrays: ``{model layer name: [arrays in the order of layer.weights]}``.
        sources: ``{model layer name: what the file calls it}`` (a string, or
            one string per array), for messages.
        required: model layers the file must provide (missing ones are an
            error when loading strictly).
        optional: entries of ``arrays`` the model may lack: they are then
            reported as unused instead of raising (fc6/fc7 for a model whose
            VGG has no classifier).
        unused: ``{file entry: reason}`` for what the reader skipped on purpose.
        preprocessing: the normalisation the weights expect, or ``None``.
        first_layer: the layer whose input channels ``channel_order="bgr"``
            reverses (``conv1_1``, ``Conv1``, ``block1_conv1``), or ``None``.
        channel_order: the file's known input channel order (the default).
        hint: how to fix a mismatch, appended to every error.
        layout: said after a received shape when the reader transposed it,
            e.g. "(in Keras layout; the file's (out, in, kh, kw) transposed)".
    """

    arrays: dict
    sources: dict = dataclasses.field(default_factory=dict)
    required: tuple = ()
    optional: frozenset = frozenset()
    unused: dict = dataclasses.field(default_factory=dict)
    preprocessing: object = None
    first_layer: object = None
    channel_order: object = None
    hint: str = ""
    layout: str = ""


def model_layers(model):
    """``{name: layer}`` for every layer of ``model`` with weights, nested models included."""
    found = {}

    def visit(container):
        for layer in container.layers:
            if isinstance(layer, keras.Model):
                visit(layer)
            elif layer.weights:
                found[layer.name] = layer

    visit(model)
    return found


def weight_label(variable):
    """Short label of a layer variable: ``kernel``, ``bias``, ``gamma`` ..."""
    return variable.name.rsplit("/", 1)[-1]


def flip_input_channels(file_weights, path):
    """Reverse the input channels of the first convolution's kernel (BGR -> RGB), in place.

    A kernel ``(kh, kw, in, out)`` trained on BGR images becomes one for RGB
    images: ``conv(rgb, k[:, :, ::-1, :]) == conv(bgr, k)``.
    """
    name = file_weights.first_layer
    if name is None or name not in file_weights.arrays:
        raise WeightsError(
            f"{path}: channel_order='bgr' needs the file's first convolution, but this "
            "file has none to convert. Use channel_order=None or 'rgb'."
        )
    kernel = file_weights.arrays[name][0]
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise WeightsError(
            f"{path}: layer {name!r} kernel: channel_order='bgr' needs 3 input channels, "
            f"received shape {kernel.shape} in the file. Use channel_order='rgb'."
        )
    file_weights.arrays[name] = [kernel[:, :, ::-1, :].copy(), *file_weights.arrays[name][1:]]


def _names(names, limit=12):
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" ... ({len(names) - limit} more)" if len(names) > limit else "")


def _first(source):
    """The file entry to name for a layer (its first array's, if several)."""
    return source[0].rsplit(".", 1)[0] if isinstance(source, (list, tuple)) else source


def assign_weights(model, file_weights, path, *, strict=True):
    """Check every name and shape of ``file_weights`` against ``model``, then assign.

    Args:
        model: the Keras model to write into.
        file_weights: a :class:`FileWeights` from a format reader.
        path: the file, for messages.
        strict: unexpected and missing layers are errors; otherwise they are
            reported (shapes of the layers both have are always checked).

    Returns:
        ``(loaded, untouched, unused)``: the model layers set, in model order;
        the model layers with weights left as they were; ``{file entry: reason}``.

    Raises:
        WeightsError: on the first unexpected or missing layer (``strict``),
            wrong number of arrays, or wrong shape. Nothing is written then.
    """
    layers = model_layers(model)
    hint = f" {file_weights.hint}" if file_weights.hint else ""
    unused = _check_names(model.name, layers, file_weights, path, strict, hint)
    plan = [pair for name, arrays in file_weights.arrays.items() if name in layers
            for pair in _checked_arrays(name, arrays, layers[name].weights, file_weights,
                                        path, hint)]
    for variable, array in plan:
        variable.assign(array.astype(variable.dtype))
    loaded = tuple(n for n in layers if n in file_weights.arrays)
    untouched = tuple(n for n in layers if n not in file_weights.arrays)
    return loaded, untouched, unused


def _check_names(model_name, layers, file_weights, path, strict, hint):
    """``{file entry: reason}`` of what the model does not take; strict: raise for any.

    Layers the file has and the model lacks are unused (an error when
    ``strict`` unless the reader marked them optional); layers the format
    requires and the file lacks are an error when ``strict``.
    """
    unused = dict(file_weights.unused)
    absent = [n for n in file_weights.arrays if n not in layers]
    unexpected = [n for n in absent if n not in file_weights.optional]
    missing = [n for n in file_weights.required if n not in file_weights.arrays]
    if strict and unexpected:
        sources = [_first(file_weights.sources.get(n, n)) for n in unexpected]
        raise WeightsError(
            f"{path}: the file has layers this model '{model_name}' does not have: "
            f"{_names(sources)}.{hint}"
        )
    if strict and missing:
        raise WeightsError(
            f"{path}: the file lacks layers this model '{model_name}' needs: "
            f"{_names(missing)}.{hint}"
        )
    # Optional entries first, then the others (strict=False), as a reader lists them.
    for name in [n for n in absent if n in file_weights.optional] + unexpected:
        unused[_first(file_weights.sources.get(name, name))] = (
            f"the model has no layer {name!r}"
        )
    return unused


def _checked_arrays(name, arrays, variables, file_weights, path, hint):
    """``[(variable, array)]`` of layer ``name``, after checking count, shapes and values."""
    source = file_weights.sources.get(name, name)
    labels = source if isinstance(source, (list, tuple)) else [source] * len(arrays)
    if len(arrays) != len(variables):
        raise WeightsError(
            f"{path}: layer {name!r}: expected {len(variables)} arrays "
            f"({', '.join(weight_label(v) for v in variables)}) for this model, "
            f"received {len(arrays)} in the file ({_names(dict.fromkeys(labels))})."
            f"{hint}"
        )
    layout = f" {file_weights.layout}" if file_weights.layout else ""
    pairs = []
    for variable, array, label in zip(variables, arrays, labels):
        array = np.asarray(array)
        where = f"layer {name!r}" if label == name else f"layer {name!r} (file: {label!r})"
        expected = tuple(int(d) for d in variable.shape)
        if tuple(array.shape) != expected:
            raise WeightsError(
                f"{path}: {where} {weight_label(variable)}: expected shape "
                f"{expected} for this model, received {tuple(array.shape)} "
                f"in the file{layout}.{hint}"
            )
        if not np.all(np.isfinite(array)):
            raise WeightsError(
                f"{path}: {where} {weight_label(variable)}: the file holds "
                "NaN or infinite values; the file is probably corrupt."
            )
        pairs.append((variable, array))
    return pairs
