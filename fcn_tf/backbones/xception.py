"""Xception encoder (Chollet, 2017) with optional dilation (DeepLab).

The architecture and layer names follow ``keras.applications.Xception``
(``block1_conv1``, ``block4_sepconv2_bn`` ...), so ImageNet weights from
``keras.applications`` load. Two deliberate differences: the unnamed residual
1x1 convolutions of the Keras model are named ``block{n}_residual_conv`` /
``block{n}_residual_bn`` here (stable names), and the two stem convolutions
use ``same`` padding so that small inputs work (the kernels are unchanged).

This is the Xception of the Keras applications (about 20.9M parameters), not
the deeper "aligned Xception-65" that the DeepLabV3+ paper modifies, for which
no Keras ImageNet weights exist.
"""

from functools import partial

from keras import layers

from fcn_tf.backbones.features import DilationTracker, Features
from fcn_tf.layers import BatchNormalization

# (block id, output channels) of the entry flow; each block halves the size.
ENTRY_FLOW = ((2, 128), (3, 256), (4, 728))
MIDDLE_FLOW_BLOCKS = range(5, 13)


def _sepconv(x, filters, dilation, name):
    x = layers.SeparableConv2D(
        filters, 3, padding="same", dilation_rate=dilation, use_bias=False, name=name
    )(x)
    return BatchNormalization(name=name + "_bn")(x)


def _downsampling_block(x, block, filters, tracker, pre_activation=True):
    """Two separable convs and a max pool, plus a strided 1x1 shortcut."""
    stride, dilation = tracker.step(2)
    if isinstance(filters, int):
        filters = (filters, filters)
    residual = layers.Conv2D(
        filters[1], 1, strides=stride, padding="same", use_bias=False,
        name=f"block{block}_residual_conv",
    )(x)
    residual = BatchNormalization(name=f"block{block}_residual_bn")(residual)
    if pre_activation:
        x = layers.Activation("relu", name=f"block{block}_sepconv1_act")(x)
    x = _sepconv(x, filters[0], dilation, f"block{block}_sepconv1")
    x = layers.Activation("relu", name=f"block{block}_sepconv2_act")(x)
    x = _sepconv(x, filters[1], dilation, f"block{block}_sepconv2")
    x = layers.MaxPooling2D(3, strides=stride, padding="same", name=f"block{block}_pool")(x)
    return layers.Add(name=f"block{block}_add")([x, residual])


def xception(inputs, *, output_stride=None):
    """Build Xception on ``inputs``; return :class:`Features` ``P1``-``P5``.

    Args:
        inputs: Keras tensor ``(B, H, W, C)``.
        output_stride: 8, 16 or ``None`` (32). Strides beyond it become
            dilations.
    """
    tracker = DilationTracker(output_stride)
    features = Features()
    conv = partial(layers.Conv2D, kernel_size=3, padding="same", use_bias=False)
    stride, _ = tracker.step(2)
    x = conv(32, strides=stride, name="block1_conv1")(inputs)
    x = BatchNormalization(name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    x = conv(64, name="block1_conv2")(x)
    x = BatchNormalization(name="block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)
    features.add(1, x, tracker.current_stride)

    for level, (block, filters) in enumerate(ENTRY_FLOW, start=2):
        x = _downsampling_block(x, block, filters, tracker, pre_activation=block != 2)
        if level < 4:
            features.add(level, x, tracker.current_stride)

    for block in MIDDLE_FLOW_BLOCKS:
        residual = x
        _, dilation = tracker.step(1)
        for index in (1, 2, 3):
            x = layers.Activation("relu", name=f"block{block}_sepconv{index}_act")(x)
            x = _sepconv(x, 728, dilation, f"block{block}_sepconv{index}")
        x = layers.Add(name=f"block{block}_add")([x, residual])
    features.add(4, x, tracker.current_stride)

    x = _downsampling_block(x, 13, (728, 1024), tracker)
    _, dilation = tracker.step(1)
    for index, filters in ((1, 1536), (2, 2048)):
        x = _sepconv(x, filters, dilation, f"block14_sepconv{index}")
        x = layers.Activation("relu", name=f"block14_sepconv{index}_act")(x)
    features.add(5, x, tracker.current_stride)
    return features
