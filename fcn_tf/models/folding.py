"""Batch normalisation folded into the convolution before it, for inference graphs.

At inference a ``BatchNormalization`` after a convolution is an affine map
per output channel, ``y = (x - mean) * gamma / sqrt(var + eps) + beta``, so
it can be absorbed by the convolution: its kernel is scaled per output
channel by ``s = gamma / sqrt(var + eps)`` and its bias becomes
``(bias - mean) * s + beta``. The folded network has no normalisation ops
left to run and computes the same function up to float32 rounding.

A pair is folded when the normalisation's only input is a convolution
(``Conv2D`` and its subclasses, ``DepthwiseConv2D``, ``SeparableConv2D``,
``Conv2DTranspose``) without activation, whose only consumer is that
normalisation, both channels-last. Everything else is copied as it is.

Example:
    >>> import fcn_tf, numpy as np
    >>> model = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    >>> folded = fold_batch_norm(model)
    >>> sum(type(l).__name__ == "BatchNormalization" for l in folded.layers)
    0
    >>> x = np.random.rand(1, 16, 16, 3).astype("float32")
    >>> bool(np.allclose(model(x), folded(x), atol=1e-5))
    True
"""

import keras
import numpy as np

from fcn_tf.precision import with_precision

# Convolution class -> the axis of its kernel that indexes output channels
# (depthwise: the last two axes together; separable: the pointwise kernel's last).
_FOLDABLE = (
    (keras.layers.SeparableConv2D, "pointwise_kernel", -1),
    (keras.layers.DepthwiseConv2D, "kernel", None),
    (keras.layers.Conv2DTranspose, "kernel", 2),
    (keras.layers.Conv2D, "kernel", -1),
)


@keras.saving.register_keras_serializable(package="fcn_tf")
class FoldedBatchNorm(keras.layers.Layer):
    """Where a folded ``BatchNormalization`` was: passes its input through.

    Takes the ``training`` and ``mask`` arguments the normalisation was called
    with, so the cloned graph calls it as it called the original.
    """

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _producer(layer):
    """The layer whose output is ``layer``'s only input, or ``None``."""
    if len(layer._inbound_nodes) != 1:
        return None
    inputs = layer._inbound_nodes[0].input_tensors
    if len(inputs) != 1:
        return None
    return inputs[0]._keras_history.operation


def _kernel_info(conv):
    for cls, attribute, axis in _FOLDABLE:
        if isinstance(conv, cls):
            return attribute, axis
    return None


def foldable_pairs(model):
    """``{batch_norm_name: conv_layer}`` of the pairs :func:`fold_batch_norm` folds."""
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        conv = _producer(layer)
        if (conv is None or _kernel_info(conv) is None or len(conv._outbound_nodes) != 1
                or len(conv._inbound_nodes) != 1
                or conv.get_config().get("activation") not in (None, "linear")
                or conv.get_config().get("data_format", "channels_last") != "channels_last"
                or layer.axis not in (-1, 3)):
            continue
        pairs[layer.name] = conv
    return pairs


def _folded_weights(conv, norm):
    """``[kernel(s)..., bias]`` of ``conv`` with ``norm`` absorbed."""
    attribute, axis = _kernel_info(conv)
    mean = np.asarray(norm.moving_mean, np.float64)
    variance = np.asarray(norm.moving_variance, np.float64)
    gamma = np.asarray(norm.gamma, np.float64) if norm.scale else np.ones_like(mean)
    beta = np.asarray(norm.beta, np.float64) if norm.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + norm.epsilon)
    kernel = np.asarray(getattr(conv, attribute), np.float64)
    if axis is None:  # depthwise: output channel c * multiplier + m
        kernel = kernel * scale.reshape(kernel.shape[2:])
    else:
        shape = [1] * kernel.ndim
        shape[axis] = -1
        kernel = kernel * scale.reshape(shape)
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else np.zeros_like(mean)
    bias = (bias - mean) * scale + beta
    weights = [np.asarray(w) for w in conv.get_weights()]
    if attribute == "pointwise_kernel":  # [depthwise, pointwise(, bias)]
        weights = [weights[0], kernel]
    else:
        weights = [kernel]
    return [w.astype(np.float32) for w in weights] + [bias.astype(np.float32)]


def fold_batch_norm(model):
    """A float32 copy of ``model`` with each convolution + ``BatchNormalization`` pair folded.

    The normalisation layers become :class:`FoldedBatchNorm` pass-throughs of the same name (so
    every other layer name is kept); the folded convolutions gain a bias.
    Returns ``model``'s float32 copy unchanged when there is nothing to fold.
    """
    model = with_precision(model, "float32")
    pairs = foldable_pairs(model)
    if not pairs:
        return model
    convs = {conv.name: name for name, conv in pairs.items()}

    def clone(layer):
        if layer.name in pairs:
            return FoldedBatchNorm(name=layer.name)
        config = layer.get_config()
        if layer.name in convs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    norms = {conv_name: model.get_layer(norm_name) for conv_name, norm_name in convs.items()}
    for layer in folded.layers:
        if layer.name in pairs:
            continue
        source = model.get_layer(layer.name)
        if layer.name in norms:
            layer.set_weights(_folded_weights(source, norms[layer.name]))
        else:
            layer.set_weights(source.get_weights())
    return folded
