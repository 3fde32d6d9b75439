"""DeepLabV3+ (Chen, Zhu, Papandreou, Schroff & Adam, ECCV 2018).

Encoder: a backbone whose last stages trade stride for dilation (output
stride 16 or 8) and ASPP with rates 6/12/18 (doubled at output stride 8).
Decoder: the stride-4 features projected to 48 channels, concatenated with
the 4x-upsampled ASPP output, two 3x3 convolutions of 256 channels, a 1x1
classifier and bilinear upsampling to the input size.
"""

import keras
from keras import layers

from fcn_tf.backbones import get_backbone
from fcn_tf.layers import ResizeLike
from fcn_tf.models.aspp import aspp
from fcn_tf.models.common import conv_bn_relu, logits_output, model_inputs

ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


def build_deeplabv3plus(
    num_classes,
    backbone="mobilenet_v2",
    *,
    output_stride=16,
    input_channels=3,
    input_size=None,
    aspp_filters=256,
    low_level_filters=48,
    decoder_filters=256,
    dropout=0.1,
):
    """Build DeepLabV3+.

    Args:
        num_classes: number of output classes.
        backbone: ``"mobilenet_v2"`` or ``"xception"``.
        output_stride: 16 or 8: the stride of the ASPP input.
        input_channels, input_size: as for every model.
        aspp_filters: channels of ASPP and its branches (256 in the paper).
        low_level_filters: channels the stride-4 features are projected to (48).
        decoder_filters: channels of the two 3x3 decoder convolutions (256).
        dropout: dropout after the ASPP projection.
    """
    if output_stride not in ASPP_RATES:
        raise ValueError(
            f"DeepLabV3+ output_stride must be 16 or 8, received {output_stride!r}."
        )
    inputs = model_inputs(input_channels, input_size)
    features = get_backbone(backbone)(inputs, output_stride=output_stride)
    low, high = features.require("P2", "P5", model="DeepLabV3+")
    x = aspp(high, ASPP_RATES[output_stride], aspp_filters, dropout)
    low = conv_bn_relu(low, low_level_filters, 1, "decoder_low_level")
    x = ResizeLike(name="decoder_upsample")(x, low)
    x = layers.Concatenate(name="decoder_concat")([x, low])
    x = conv_bn_relu(x, decoder_filters, 3, "decoder_conv1")
    x = conv_bn_relu(x, decoder_filters, 3, "decoder_conv2")
    x = layers.Conv2D(num_classes, 1, name="classifier")(x)
    x = ResizeLike(name="upsample_to_input")(x, inputs)
    return keras.Model(inputs, logits_output(x), name=f"deeplabv3plus_{backbone}")
