"""Pieces shared by the model builders."""

import keras
from keras import layers

from fcn_tf.layers import AtrousConv2D, BatchNormalization, ResizeLike


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


def classifier_to_input_size(x, inputs, num_classes, dropout):
    """Dropout (if any), a 1x1 classifier ``head``, bilinear upsampling to ``inputs``' size.

    The end of the CPU models (``fpn``, ``ddrnet_lite``): their logits, named
    and kept float32 by :func:`logits_output`.
    """
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Conv2D(num_classes, 1, name="head")(x)
    return logits_output(ResizeLike(name="upsample_logits")(x, inputs))


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
