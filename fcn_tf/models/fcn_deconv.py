"""The all-deconvolution FCN: a popular PyTorch teaching version of FCN-8s.

A VGG encoder is followed by five stride-2 3x3 transposed convolutions
(output padding 1) that go back from ``pool5`` to full resolution. The first
four outputs are summed with ``pool4`` ... ``pool1``:
``bn(relu(deconv(x)) + skip)``; the fifth has no skip, ``bn(relu(deconv(x)))``;
a 1x1 classifier follows. Inputs are padded to a multiple of 32 inside the
model and the logits cropped back, so any size goes in.
"""

import keras
from keras import layers

from fcn_tf.backbones import get_backbone
from fcn_tf.backbones.vgg import scaled
from fcn_tf.layers import BatchNormalization, CropLike, PadToMultiple
from fcn_tf.models.common import logits_output, model_inputs

DECODER_FILTERS = (512, 256, 128, 64, 32)


def _deconv(x, filters, name):
    """PyTorch's ``ConvTranspose2d(k=3, s=2, padding=1, output_padding=1)``.

    A valid Keras transposed convolution gives ``2n + 1`` rows; PyTorch's
    ``padding=1`` drops the first row and ``output_padding=1`` keeps the
    last, leaving rows ``1 .. 2n``. (Keras' ``same`` would keep ``0 .. 2n-1``,
    a one-pixel shift that breaks ported weights.)
    """
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding="valid", name=name)(x)
    return layers.Cropping2D(((1, 0), (1, 0)), name=name + "_crop")(x)


def build_fcn_deconv(
    num_classes,
    backbone="vgg16",
    *,
    input_channels=3,
    input_size=None,
    width_multiplier=1.0,
):
    """Build the all-deconvolution FCN.

    Args:
        num_classes: number of output classes.
        backbone: ``"vgg16"`` or ``"vgg19"``.
        input_channels, input_size: as for every model.
        width_multiplier: scales encoder and decoder channel counts.
    """
    inputs = model_inputs(input_channels, input_size)
    padded = PadToMultiple(32, name="pad_to_32")(inputs)
    features = get_backbone(backbone)(padded, width_multiplier=width_multiplier)
    x = features["P5"]
    skips = [features[f"P{level}"] for level in (4, 3, 2, 1)] + [None]
    for index, (filters, skip) in enumerate(zip(DECODER_FILTERS, skips), start=1):
        x = _deconv(x, scaled(filters, width_multiplier), f"deconv{index}")
        x = layers.ReLU(name=f"relu{index}")(x)
        if skip is not None:
            x = layers.Add(name=f"skip{index}")([x, skip])
        x = BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"bn{index}")(x)
    x = layers.Conv2D(num_classes, 1, name="classifier")(x)
    x = CropLike(0, name="crop_to_input")(x, inputs)
    return keras.Model(inputs, logits_output(x), name=f"fcn_deconv_{backbone}")
