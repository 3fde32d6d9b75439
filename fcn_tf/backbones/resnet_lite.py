"""A small residual encoder for training from scratch on a CPU.

Two stride-2 3x3 convolutions take the image to stride 4, then four stages
of ResNet basic blocks (He, Zhang, Ren & Sun, CVPR 2016: two 3x3
convolutions and an identity, or a strided 1x1 projection where the shape
changes) at strides 4, 8, 16 and 32. The defaults (32-64-128-256 channels,
two blocks per stage, about 2.9 M parameters) spend the compute at stride
4 and below, where dense convolutions of 32 or more channels run near the
CPU's matrix rate, instead of at full resolution, where a U-Net's 16-64
channel convolutions are memory bound.
"""

from keras import layers

from fcn_tf.backbones.features import Features
from fcn_tf.layers import BatchNormalization

STEM_FILTERS = 24


def conv_bn(x, filters, kernel_size, stride, name, relu=True):
    """Convolution without bias, BatchNorm with PyTorch's defaults, optional ReLU."""
    x = layers.Conv2D(filters, kernel_size, strides=stride, padding="same", use_bias=False,
                      name=name)(x)
    # PyTorch's BatchNorm defaults (momentum 0.1 = Keras 0.9): the running
    # statistics keep up in short trainings (as in the U-Net encoder).
    x = BatchNormalization(momentum=0.9, epsilon=1e-5, name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x) if relu else x


def basic_block(x, filters, stride, name):
    """ResNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut, ReLU."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = conv_bn(x, filters, 1, stride, name + "_proj", relu=False)
    y = conv_bn(x, filters, 3, stride, name + "_conv1")
    y = conv_bn(y, filters, 3, 1, name + "_conv2", relu=False)
    y = layers.Add(name=name + "_add")([shortcut, y])
    return layers.ReLU(name=name + "_relu")(y)


def resnet_lite(inputs, *, widths=(32, 64, 128, 256), blocks=(2, 2, 2, 2),
                stem_filters=STEM_FILTERS):
    """Build the encoder; return :class:`Features` ``P1`` (stem) and ``P2``-``P5``.

    Args:
        widths: channels of the stages at strides 4, 8, 16 and 32.
        blocks: basic blocks per stage.
        stem_filters: channels of the first (stride-2) convolution.
    """
    widths, blocks = check_stages(widths, blocks, "resnet_lite")
    features = Features()
    x = stem(inputs, widths[0], stem_filters, features)
    for stage, (filters, count) in enumerate(zip(widths, blocks)):
        x = residual_stage(x, filters, count, 2 if stage else 1, f"stage{stage + 1}")
        features.add(stage + 2, x, 2 ** (stage + 2))
    return features


def check_stages(widths, blocks, owner):
    """``widths``/``blocks`` as tuples of four positive entries, or a ValueError naming ``owner``."""
    widths, blocks = tuple(widths), tuple(blocks)
    if len(widths) != 4 or len(blocks) != 4 or min(blocks) < 1 or min(widths) < 1:
        raise ValueError(
            f"{owner}: widths and blocks need four positive entries (strides 4, 8, 16, "
            f"32), received widths={list(widths)}, blocks={list(blocks)}."
        )
    return widths, blocks


def stem(inputs, filters, stem_filters=STEM_FILTERS, features=None):
    """Two stride-2 3x3 convolutions to stride 4 (``P1`` into ``features`` if given)."""
    x = conv_bn(inputs, stem_filters, 3, 2, "stem_conv1")
    if features is not None:
        features.add(1, x, 2)
    return conv_bn(x, filters, 3, 2, "stem_conv2")


def residual_stage(x, filters, count, stride, name):
    """``count`` basic blocks named ``{name}_block1``..., the first one strided."""
    for index in range(count):
        x = basic_block(x, filters, stride if index == 0 else 1, f"{name}_block{index + 1}")
    return x
