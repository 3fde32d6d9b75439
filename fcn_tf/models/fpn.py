"""FPN segmentation head with pyramid pooling (a compact UPerNet).

Decoder of Kirillov, Girshick, He & Dollar, "Panoptic Feature Pyramid
Networks" (CVPR 2019) and Xiao et al., "Unified Perceptual Parsing"
(UPerNet, ECCV 2018): the deepest features get a pyramid pooling module
(PSPNet, Zhao et al., CVPR 2017: average pools to 1x1, 2x2, 3x3 and 6x6
bins, projected, upsampled and concatenated), then a top-down pathway adds
each upsampled level to a 1x1 projection of the next finer one (strides 32
to 4). Every level is smoothed by a 3x3 convolution, upsampled to stride 4
and summed; a 3x3 convolution and a 1x1 classifier give stride-4 logits,
bilinearly upsampled to the input size.

Built for training from scratch on small data with a CPU: the default
backbone (:mod:`fcn_tf.backbones.resnet_lite`) and the 64-channel decoder
cost 5.2 GFLOPs (2.6 G multiply-adds, counted by fcn_tf.bench.flops) per
360x480 image.
"""

import keras
from keras import layers, ops

from fcn_tf.backbones import get_backbone
from fcn_tf.backbones.resnet_lite import conv_bn
from fcn_tf.layers import ImageStandardize, ResizeLike
from fcn_tf.models.common import classifier_to_input_size, model_inputs

POOL_BINS = (1, 2, 3, 6)


def pyramid_pooling(x, filters, name, bins=POOL_BINS):
    """PSPNet's pyramid pooling at any input size, projected to ``filters``."""
    branches = [x]
    for size in bins:
        pooled = AdaptiveAveragePool(size, name=f"{name}_pool{size}")(x)
        pooled = conv_bn(pooled, filters // len(bins), 1, 1, f"{name}_pool{size}_conv")
        branches.append(ResizeLike(name=f"{name}_pool{size}_up")(pooled, x))
    x = layers.Concatenate(name=f"{name}_concat")(branches)
    return conv_bn(x, filters, 3, 1, f"{name}_project")


@keras.saving.register_keras_serializable(package="fcn_tf")
class AdaptiveAveragePool(layers.Layer):
    """Average pooling to a fixed ``size x size`` grid from any input size.

    Bin ``i`` of ``n`` covers rows ``floor(i H / n)`` to ``ceil((i+1) H / n)``
    (PyTorch's ``AdaptiveAvgPool2d`` rule), computed from cumulative sums so
    that the input size may be known only at run time.
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def _pool_axis(self, x, axis):
        length = ops.shape(x)[axis]
        zero = ops.zeros_like(ops.take(x, ops.arange(1), axis=axis))
        cumulative = ops.concatenate([zero, ops.cumsum(x, axis=axis)], axis=axis)
        index = ops.arange(self.size, dtype="int32")
        n = ops.cast(length, "int32")
        start = (index * n) // self.size
        end = ((index + 1) * n + self.size - 1) // self.size
        total = ops.take(cumulative, end, axis=axis) - ops.take(cumulative, start, axis=axis)
        shape = [1, 1, 1, 1]
        shape[axis] = self.size
        count = ops.reshape(ops.cast(end - start, x.dtype), shape)
        return total / count

    def call(self, x):
        # Sums in float32: bfloat16 cumulative sums lose the small terms.
        dtype = x.dtype
        x = ops.cast(x, "float32")
        x = self._pool_axis(self._pool_axis(x, 1), 2)
        return ops.cast(x, dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def build_fpn(
    num_classes,
    backbone="resnet_lite",
    *,
    decoder_filters=64,
    widths=(32, 64, 128, 256),
    blocks=(2, 2, 2, 2),
    dropout=0.1,
    standardize_input=False,
    input_channels=3,
    input_size=None,
):
    """Build the FPN model.

    Args:
        num_classes: output channels.
        backbone: only ``"resnet_lite"``.
        decoder_filters: channels of the pyramid pooling and FPN levels.
        widths, blocks: the backbone's stage channels and blocks per stage.
        dropout: before the classifier.
        standardize_input: standardise each image per channel first
            (:class:`~fcn_tf.layers.ImageStandardize`), so that its exposure
            and white balance do not reach the network.
        input_channels: 1 for grayscale, 3 for RGB.
        input_size: optional fixed ``(height, width)``.
    """
    if backbone != "resnet_lite":
        raise ValueError(f"fpn supports only backbone 'resnet_lite', received {backbone!r}.")
    inputs = model_inputs(input_channels, input_size)
    x = ImageStandardize(name="standardize_input")(inputs) if standardize_input else inputs
    features = get_backbone(backbone)(x, widths=widths, blocks=blocks)
    levels = features.require("P2", "P3", "P4", "P5", model="fpn")
    top = pyramid_pooling(levels[-1], decoder_filters, "ppm")
    pyramid = {5: top}
    for level in (4, 3, 2):
        lateral = conv_bn(levels[level - 2], decoder_filters, 1, 1, f"fpn_lateral{level}")
        up = ResizeLike(name=f"fpn_up{level}")(pyramid[level + 1], lateral)
        pyramid[level] = layers.Add(name=f"fpn_merge{level}")([lateral, up])
    finest = pyramid[2]
    merged = []
    for level in (2, 3, 4, 5):
        x = conv_bn(pyramid[level], decoder_filters, 3, 1, f"fpn_smooth{level}")
        if level != 2:
            x = ResizeLike(name=f"fpn_out{level}_up")(x, finest)
        merged.append(x)
    x = layers.Add(name="fpn_fuse")(merged)
    x = conv_bn(x, decoder_filters, 3, 1, "fuse_conv")
    logits = classifier_to_input_size(x, inputs, num_classes, dropout)
    return keras.Model(inputs, logits, name="fpn")
