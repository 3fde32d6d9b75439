"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, CVPR 2015).

The geometry is the reference Caffe / PyTorch FCN's: ``conv1_1`` pads the
input by 100 pixels, pools round up, ``fc6`` is a 7x7 valid convolution, and
every upsampling is a bias-free transposed convolution initialised to
bilinear interpolation. Skip scores and the final scores are cropped with the
reference offsets, so the logits have exactly the input's size for any input
from 1x1 up. The three variants are one head with a different list of skips.

Example:
    >>> import fcn_tf
    >>> model = fcn_tf.build_model("fcn8s", num_classes=21)
    >>> model.count_params()
    134489759
"""

import keras
from keras import layers

from fcn_tf.backbones import get_backbone
from fcn_tf.backbones.vgg import scaled
from fcn_tf.layers import BilinearUpsampling, CropLike, Im2ColConv2D
from fcn_tf.models.common import logits_output, model_inputs

# Per variant: the skips fused on the way up (backbone level, crop offset), and
# the final upsampling layer (name, kernel size, stride, crop offset).
FCN_VARIANTS = {
    32: {"skips": (), "final": ("upscore", 64, 32, 19)},
    16: {"skips": ((4, 5),), "final": ("upscore16", 32, 16, 27)},
    8: {"skips": ((4, 5), (3, 9)), "final": ("upscore8", 16, 8, 31)},
}
FC_UNITS = 4096


def _upsample(x, num_classes, kernel_size, stride, name):
    return layers.Conv2DTranspose(
        num_classes, kernel_size, strides=stride, use_bias=False,
        kernel_initializer=BilinearUpsampling(), name=name,
    )(x)


def build_fcn(
    num_classes,
    backbone="vgg16",
    *,
    stride=8,
    input_channels=3,
    input_size=None,
    dropout=0.5,
    width_multiplier=1.0,
):
    """Build FCN-``stride``s on a VGG backbone.

    Args:
        num_classes: number of output classes (logit channels).
        backbone: ``"vgg16"`` or ``"vgg19"``.
        stride: 32, 16 or 8: the coarsest stride whose scores are fused.
        input_channels: channels of the input image.
        input_size: optional fixed ``(height, width)``; ``None`` accepts any.
        dropout: dropout rate after ``fc6`` and ``fc7`` (0.5 in the paper).
        width_multiplier: scales VGG's and fc6/fc7's channel counts (1.0 is
            the paper's network; small values make tiny test models).

    Returns:
        A ``keras.Model`` from ``(B, H, W, C)`` images to ``(B, H, W, num_classes)``
        logits, named ``fcn{stride}s_{backbone}``.
    """
    if stride not in FCN_VARIANTS:
        raise ValueError(
            f"FCN stride must be one of 32, 16, 8, received {stride!r}."
        )
    variant = FCN_VARIANTS[stride]
    inputs = model_inputs(input_channels, input_size)
    features = get_backbone(backbone)(
        inputs, fcn_geometry=True, width_multiplier=width_multiplier
    )
    (pool5,) = features.require("P5", model=f"FCN-{stride}s")
    fc_units = scaled(FC_UNITS, width_multiplier)
    # fc6/fc7 are big kernels on a few pixels: faster as one matmul (fcn_tf.layers.im2col).
    x = Im2ColConv2D(fc_units, 7, activation="relu", name="fc6")(pool5)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = Im2ColConv2D(fc_units, 1, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    x = layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name="score_fr")(x)

    upsample_names = ("upscore2", "upscore_pool4")
    for (level, offset), up_name in zip(variant["skips"], upsample_names):
        x = _upsample(x, num_classes, 4, 2, up_name)
        skip = layers.Conv2D(
            num_classes, 1, kernel_initializer="zeros", name=f"score_pool{level}"
        )(features[f"P{level}"])
        skip = CropLike(offset, name=f"score_pool{level}c")(skip, x)
        x = layers.Add(name=f"fuse_pool{level}")([x, skip])

    name, kernel_size, up_stride, offset = variant["final"]
    x = _upsample(x, num_classes, kernel_size, up_stride, name)
    x = CropLike(offset, name="score")(x, inputs)


    return keras.Model(inputs, logits_output(x), name=f"fcn{stride}s_{backbone}")
