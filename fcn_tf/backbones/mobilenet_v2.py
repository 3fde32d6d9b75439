"""MobileNetV2 encoder (Sandler et al., 2018) with optional dilation (DeepLab).

The architecture and layer names are those of ``keras.applications.MobileNetV2``
(``Conv1``, ``block_3_expand``, ``block_3_depthwise_BN`` ...), so ImageNet
weights saved from ``keras.applications`` load by name. The final 1x1
convolution to 1280 channels (``Conv_1``) is left out: DeepLabV3+ takes the
320-channel output of the last inverted-residual block, as the reference
DeepLab implementations do.

``style="torch"`` builds the same layers (same names and shapes) as PyTorch
MobileNetV2 implementations do (torchvision's, the one of
bubbliiiing/deeplabv3-plus-pytorch): stride-2 convolutions pad one pixel on
every side (PyTorch ``padding=1``) instead of Keras' ``"same"`` (which pads
only bottom/right on even sizes), and BatchNorm uses PyTorch's ``eps=1e-5``
and momentum 0.1 (Keras 0.9) instead of ``1e-3`` / 0.999. Weights of such a
model give the same numbers only with this style.
"""

from keras import layers

from fcn_tf.backbones.features import DilationTracker, Features
from fcn_tf.layers import BatchNormalization, DepthwiseConv2D

# (expansion, output channels, repeats, first stride) per stage, from the paper's Table 2.
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value, divisor=8):
    """Round channels to a multiple of ``divisor`` (never down by more than 10%)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


# BatchNorm (epsilon, momentum) and the padding of stride-2 convolutions per style.
STYLES = {
    "keras": {"epsilon": 1e-3, "momentum": 0.999, "stride2_padding": ((0, 1), (0, 1))},
    "torch": {"epsilon": 1e-5, "momentum": 0.9, "stride2_padding": ((1, 1), (1, 1))},
}


def _bn(name, style="keras"):
    return BatchNormalization(
        epsilon=STYLES[style]["epsilon"], momentum=STYLES[style]["momentum"], name=name
    )


def _inverted_residual(x, expansion, filters, stride, dilation, block_id, style="keras"):
    in_channels = x.shape[-1]
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    shortcut = x
    if block_id:
        x = layers.Conv2D(
            expansion * in_channels, 1, use_bias=False, name=prefix + "expand"
        )(x)
        x = _bn(prefix + "expand_BN", style)(x)
        x = layers.ReLU(6.0, name=prefix + "expand_relu")(x)
    if stride == 2:
        x = layers.ZeroPadding2D(STYLES[style]["stride2_padding"], name=prefix + "pad")(x)
    x = DepthwiseConv2D(
        3,
        strides=stride,
        dilation_rate=dilation,
        use_bias=False,
        padding="valid" if stride == 2 else "same",
        name=prefix + "depthwise",
    )(x)
    x = _bn(prefix + "depthwise_BN", style)(x)
    x = layers.ReLU(6.0, name=prefix + "depthwise_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=prefix + "project")(x)
    x = _bn(prefix + "project_BN", style)(x)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=prefix + "add")([shortcut, x])
    return x


def mobilenet_v2(inputs, *, output_stride=None, alpha=1.0, style="keras"):
    """Build MobileNetV2 on ``inputs``; return :class:`Features` ``P1``-``P5``.

    Args:
        inputs: Keras tensor ``(B, H, W, C)``.
        output_stride: 8, 16 or ``None`` (32). Strides beyond it become
            dilations.
        alpha: width multiplier, as in ``keras.applications``.
        style: ``"keras"`` (``keras.applications``' padding and BatchNorm) or
            ``"torch"`` (PyTorch's symmetric padding and BatchNorm epsilon;
            see the module docstring). The layer names are the same.
    """
    if style not in STYLES:
        raise ValueError(
            f"mobilenet_v2 style must be one of {', '.join(map(repr, STYLES))}, "
            f"received {style!r}."
        )
    tracker = DilationTracker(output_stride)
    features = Features()
    stride, _ = tracker.step(2)
    x = inputs
    if style == "torch":
        x = layers.ZeroPadding2D(STYLES[style]["stride2_padding"], name="Conv1_pad")(x)
    x = layers.Conv2D(
        make_divisible(32 * alpha), 3, strides=stride,
        padding="valid" if style == "torch" else "same", use_bias=False, name="Conv1",
    )(x)
    x = _bn("bn_Conv1", style)(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    level = 1
    block_id = 0
    for expansion, channels, repeats, first_stride in MOBILENET_V2_STAGES:
        if first_stride == 2:
            features.add(level, x, tracker.current_stride)
            level += 1
        filters = make_divisible(channels * alpha)
        for repeat in range(repeats):
            stride, dilation = tracker.step(first_stride if repeat == 0 else 1)
            x = _inverted_residual(x, expansion, filters, stride, dilation, block_id, style)
            block_id += 1
    features.add(level, x, tracker.current_stride)
    return features
