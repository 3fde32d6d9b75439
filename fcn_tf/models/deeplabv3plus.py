"""DeepLabV3+ (Chen, Zhu, Papandreou, Schroff & Adam, ECCV 2018).

Encoder: a backbone whose last stages trade stride for dilation (output
stride 16 or 8) and ASPP with rates 6/12/18 (doubled at output stride 8).
Decoder: the stride-4 features projected to 48 channels, concatenated with
the 4x-upsampled ASPP output, two 3x3 convolutions of 256 channels, a 1x1
classifier and bilinear upsampling to the input size.

``variant`` chooses between implementations that differ in details that
change the numbers but not the weights' shapes (table :data:`VARIANTS`):

- ``"default"``: ``keras.applications``' MobileNetV2 / Xception (Keras
  ``"same"`` padding, BatchNorm ``eps=1e-3``), half-pixel bilinear resizes,
  dropout 0.1 after ASPP.
- ``"bubbliiiing"``: the architecture of the popular PyTorch implementation
  https://github.com/bubbliiiing/deeplabv3-plus-pytorch (``nets/deeplabv3_plus.py``,
  ``nets/mobilenetv2.py``), so that its state dicts load with equal logits
  (:mod:`fcn_tf.weights.torch_deeplab`): MobileNetV2 with PyTorch padding and
  BatchNorm ``eps=1e-5`` everywhere, both bilinear resizes with
  ``align_corners=True``, no dropout after ASPP but 0.5 after the first and
  0.1 after the second decoder convolution. Its ASPP, low-level and decoder
  convolutions have biases followed by BatchNorm; here they have none and
  the loader folds each bias into the BatchNorm's moving mean (exact in
  inference and in training, where BatchNorm removes any constant).
  MobileNetV2 only. Its dilation scheme (``_nostride_dilate``) is the one
  :class:`~fcn_tf.backbones.DilationTracker` follows at output stride 16 and 8.

The layer names are the same in both, and the default model is unchanged.
"""

import dataclasses

import keras
from keras import layers

from fcn_tf.backbones import get_backbone
from fcn_tf.layers import ResizeLike
from fcn_tf.models.aspp import aspp
from fcn_tf.models.common import conv_bn_relu, logits_output, model_inputs

ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


@dataclasses.dataclass(frozen=True)
class Variant:
    """What differs between the DeepLabV3+ implementations this builder follows.

    Attributes:
        backbones: the backbones the variant is defined for.
        backbone_options: extra options for the backbone function.
        align_corners: the bilinear resizes' sampling (PyTorch ``align_corners``).
        bn_epsilon, bn_momentum: BatchNorm of the ASPP and decoder (Keras momentum).
        aspp_dropout: dropout after the ASPP projection when ``dropout=None``.
        decoder_dropout: dropout after ``decoder_conv1`` and ``decoder_conv2``.
    """

    backbones: tuple
    backbone_options: dict
    align_corners: bool
    bn_epsilon: float
    bn_momentum: float
    aspp_dropout: float
    decoder_dropout: tuple

    @property
    def bn(self):
        """The ASPP's and the decoder's BatchNorm settings, as keyword arguments."""
        return {"bn_epsilon": self.bn_epsilon, "bn_momentum": self.bn_momentum}


VARIANTS = {
    "default": Variant(
        backbones=("mobilenet_v2", "xception"),
        backbone_options={},
        align_corners=False,
        bn_epsilon=1e-3,
        bn_momentum=0.99,
        aspp_dropout=0.1,
        decoder_dropout=(0.0, 0.0),
    ),
    # bubbliiiing/deeplabv3-plus-pytorch, nets/deeplabv3_plus.py: nn.BatchNorm2d
    # defaults, F.interpolate(..., align_corners=True), Dropout(0.5)/(0.1) in cat_conv.
    "bubbliiiing": Variant(
        backbones=("mobilenet_v2",),
        backbone_options={"style": "torch"},
        align_corners=True,
        bn_epsilon=1e-5,
        bn_momentum=0.9,
        aspp_dropout=0.0,
        decoder_dropout=(0.5, 0.1),
    ),
}


def build_deeplabv3plus(
    num_classes,
    backbone="mobilenet_v2",
    *,
    output_stride=16,
    input_channels=3, input_size=None,
    aspp_filters=256,
    low_level_filters=48,
    decoder_filters=256,
    dropout=None,
    variant="default",
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
        dropout: dropout after the ASPP projection; ``None`` takes the
            variant's (0.1 for ``"default"``, none for ``"bubbliiiing"``).
        variant: ``"default"`` or ``"bubbliiiing"`` (the PyTorch
            implementation whose weights :func:`fcn_tf.from_pytorch` loads;
            see the module docstring and :data:`VARIANTS`).

    Example:
        >>> import fcn_tf
        >>> model = fcn_tf.build_model("deeplabv3plus", 21, variant="bubbliiiing")  # doctest: +SKIP
    """
    spec = _checked_variant(variant, backbone, output_stride)
    inputs = model_inputs(input_channels, input_size)
    features = get_backbone(backbone)(
        inputs, output_stride=output_stride, **spec.backbone_options
    )
    low, high = features.require("P2", "P5", model="DeepLabV3+")
    aspp_dropout = spec.aspp_dropout if dropout is None else dropout
    x = aspp(high, ASPP_RATES[output_stride], aspp_filters, aspp_dropout, **spec.bn)
    x = _decoder(x, low, spec, low_level_filters=low_level_filters,
                 decoder_filters=decoder_filters)
    x = layers.Conv2D(num_classes, 1, name="classifier")(x)
    x = ResizeLike(align_corners=spec.align_corners, name="upsample_to_input")(x, inputs)
    return keras.Model(inputs, logits_output(x), name=f"deeplabv3plus_{backbone}")


def _checked_variant(variant, backbone, output_stride):
    """The :class:`Variant` named ``variant``, once the arguments are known to fit it."""
    if output_stride not in ASPP_RATES:
        raise ValueError(
            f"DeepLabV3+ output_stride must be 16 or 8, received {output_stride!r}."
        )
    if variant not in VARIANTS:
        raise ValueError(
            f"DeepLabV3+ variant must be one of {', '.join(map(repr, VARIANTS))}, "
            f"received {variant!r}."
        )
    spec = VARIANTS[variant]
    if backbone not in spec.backbones:
        raise ValueError(
            f"DeepLabV3+ variant {variant!r} is defined for backbone "
            f"{', '.join(map(repr, spec.backbones))}, received {backbone!r}. "
            "Use variant='default' for other backbones."
        )
    return spec


def _decoder(x, low, spec, *, low_level_filters, decoder_filters):
    """The decoder: ASPP output ``x`` upsampled to the stride-4 features ``low``, then fused.

    ``low`` is projected to ``low_level_filters`` channels
    (``decoder_low_level``), concatenated after ``x`` and passed through
    ``decoder_conv1`` and ``decoder_conv2`` (each with the variant's dropout).
    """
    low = conv_bn_relu(low, low_level_filters, 1, "decoder_low_level", **spec.bn)
    x = ResizeLike(align_corners=spec.align_corners, name="decoder_upsample")(x, low)
    x = layers.Concatenate(name="decoder_concat")([x, low])
    for index, rate in enumerate(spec.decoder_dropout, start=1):
        x = conv_bn_relu(x, decoder_filters, 3, f"decoder_conv{index}", **spec.bn)
        if rate:
            x = layers.Dropout(rate, name=f"decoder_dropout{index}")(x)
    return x
