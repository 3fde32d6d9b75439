"""Pieces shared by the model builders."""

import keras
from keras import layers

from fcn_tf.layers import AtrousConv2D, BatchNormalization


def model_inputs(input_channels=3, input_size=None):
    """The ``keras.Input`` of every model: ``(H, W, C)``, H and W ``None`` by default."""
    height, width = (None, None) if input_size is None else tuple(input_size)
    if int(input_channels) < 1:
        raise ValueError(
            f"input_channels must be >= 1, received {input_channels!r}."
        )
    return keras.Input((height, width, int(input_channels)), name="image")


def logits_output(x):
    """Name the output ``logits`` and keep it float32 under mixed precision."""
    return layers.Activation("linear", dtype="float32", name="logits")(x)


def conv_bn_relu(x, filters, kernel_size, name, dilation=1, bn_epsilon=1e-3, bn_momentum=0.99):
    """Convolution without bias, BatchNorm and ReLU: the DeepLab building block.

    ``bn_epsilon``/``bn_momentum`` default to Keras' BatchNorm defaults;
    PyTorch's are ``1e-5`` / ``0.9`` (its momentum 0.1). A dilated
    convolution is an :class:`~fcn_tf.layers.AtrousConv2D`, which skips the
    taps that read only padding on small feature maps.
    """
    conv = AtrousConv2D if dilation != 1 else layers.Conv2D
    x = conv(
        filters, kernel_size, padding="same", dilation_rate=dilation,
        use_bias=False, name=name,
    )(x)
    x = BatchNormalization(epsilon=bn_epsilon, momentum=bn_momentum, name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x)
