"""A compact dual-resolution network (after DDRNet-23-slim), for CPU training from scratch.

Layout of Hong, Pan, Sun & Jia, "Deep Dual-resolution Networks for
Real-time and Accurate Semantic Segmentation of Road Scenes" (2021),
DDRNet-23-slim: a residual trunk to stride 8, then two branches that run
side by side, a high-resolution one that stays at stride 8 and keeps the
detail of thin objects, and a low-resolution one that goes on to strides 16
and 32 for context. After each of the two branch stages they exchange
information both ways (bilateral fusion): the low branch is projected by a
1x1 convolution, upsampled and added to the high branch; the high branch is
brought down by stride-2 3x3 convolutions and added to the low branch. A
context module on the deepest low-branch map is upsampled and added to the
high branch, and a 3x3 convolution and a 1x1 classifier give stride-8
logits, bilinearly upsampled to the input size.

Written for this package's small images and layers, and different from the
paper in three ways, on purpose: the low branch ends at stride 32 (the
paper's fifth stage to stride 64 leaves a 6x8 map of a 360x480 image); the
context module is PSPNet's pyramid pooling (:func:`fcn_tf.models.fpn.
pyramid_pooling`, any input size) where the paper has DAPPM, whose pooling
kernels are sized for 1024x2048 images; and every block is a ResNet basic
block (:mod:`fcn_tf.backbones.resnet_lite`), with no auxiliary head. The
trunk and low branch are resnet_lite's layers (``stem_*``, ``stage1``-
``stage4``), so the backbone can be frozen by name; the high branch
(``high3``, ``high4``), the fusions (``fuse*``), the context module
(``ppm*``) and the head are the rest.
"""

import keras
from keras import layers

from fcn_tf.backbones.resnet_lite import check_stages, conv_bn, residual_stage, stem
from fcn_tf.layers import ResizeLike
from fcn_tf.models.common import classifier_to_input_size, model_inputs
from fcn_tf.models.fpn import pyramid_pooling


def _fuse(high, low, stage):
    """Bilateral fusion after branch stage ``stage``: each branch gets the other's map."""
    down = high
    steps = stage - 2  # stride 8 -> 16 is one step, 8 -> 32 two
    for step in range(steps):
        last = step == steps - 1
        filters = low.shape[-1] if last else high.shape[-1] * 2 ** (step + 1)
        down = conv_bn(down, filters, 3, 2, f"fuse{stage}_down{step + 1}", relu=not last)
    up = conv_bn(low, high.shape[-1], 1, 1, f"fuse{stage}_up", relu=False)
    up = ResizeLike(name=f"fuse{stage}_up_resize")(up, high)
    low = layers.ReLU(name=f"fuse{stage}_low_relu")(
        layers.Add(name=f"fuse{stage}_low")([low, down]))
    high = layers.ReLU(name=f"fuse{stage}_high_relu")(
        layers.Add(name=f"fuse{stage}_high")([high, up]))
    return high, low


def build_ddrnet(
    num_classes,
    backbone="resnet_lite",
    *,
    widths=(32, 64, 128, 256),
    blocks=(2, 2, 2, 2),
    head_filters=64,
    dropout=0.1,
    input_channels=3,
    input_size=None,
):
    """Build the dual-resolution model.

    Args:
        num_classes: output channels.
        backbone: only ``"resnet_lite"`` (the trunk and low branch).
        widths: channels at strides 4, 8, 16 and 32; the high branch keeps
            the stride-8 width.
        blocks: basic blocks per stage at strides 4, 8, 16 and 32; the high
            branch runs as many blocks beside the stride-16 and stride-32
            stages.
        head_filters: channels of the head's 3x3 convolution.
        dropout: before the classifier.
        input_channels: 1 for grayscale, 3 for RGB.
        input_size: optional fixed ``(height, width)``.
    """
    if backbone != "resnet_lite":
        raise ValueError(
            f"ddrnet_lite supports only backbone 'resnet_lite', received {backbone!r}."
        )
    widths, blocks = check_stages(widths, blocks, "ddrnet_lite")
    if isinstance(head_filters, bool) or not isinstance(head_filters, int) or head_filters < 1:
        raise ValueError(
            f"ddrnet_lite: head_filters must be a positive integer, received {head_filters!r}."
        )
    inputs = model_inputs(input_channels, input_size)
    x = stem(inputs, widths[0])
    x = residual_stage(x, widths[0], blocks[0], 1, "stage1")
    high = low = residual_stage(x, widths[1], blocks[1], 2, "stage2")
    for stage in (3, 4):
        low = residual_stage(low, widths[stage - 1], blocks[stage - 1], 2, f"stage{stage}")
        high = residual_stage(high, widths[1], blocks[stage - 1], 1, f"high{stage}")
        high, low = _fuse(high, low, stage)
    context = pyramid_pooling(low, widths[1], "ppm")
    context = ResizeLike(name="ppm_up")(context, high)
    x = layers.Add(name="context_add")([high, context])
    x = conv_bn(x, head_filters, 3, 1, "head_conv")
    logits = classifier_to_input_size(x, inputs, num_classes, dropout)
    return keras.Model(inputs, logits, name="ddrnet_lite")
