"""Atrous Spatial Pyramid Pooling (Chen et al., DeepLabV3, 2017).

A 1x1 branch, one 3x3 atrous branch per rate and an image-pooling branch
(global average, 1x1 convolution, broadcast back to the runtime feature size),
concatenated and projected to ``filters`` channels.
"""

from keras import layers

from fcn_tf.layers import BroadcastLike
from fcn_tf.models.common import conv_bn_relu


def aspp(x, rates, filters=256, dropout=0.1, name="aspp", **bn):
    """Apply ASPP to ``x``; layers are named ``aspp_1x1``, ``aspp_rate6`` ... ``aspp_pool``.

    ``bn`` (``bn_epsilon``, ``bn_momentum``) is passed to every
    :func:`~fcn_tf.models.common.conv_bn_relu`; ``dropout=0`` adds no dropout layer.
    """
    branches = [conv_bn_relu(x, filters, 1, f"{name}_1x1", **bn)]
    for rate in rates:
        branches.append(conv_bn_relu(x, filters, 3, f"{name}_rate{rate}", dilation=rate, **bn))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool_gap")(x)
    pooled = conv_bn_relu(pooled, filters, 1, f"{name}_pool", **bn)
    branches.append(BroadcastLike(name=f"{name}_pool_broadcast")(pooled, x))
    x = layers.Concatenate(name=f"{name}_concat")(branches)
    x = conv_bn_relu(x, filters, 1, f"{name}_project", **bn)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x
