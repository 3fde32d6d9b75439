"""VGG16 and VGG19 encoders (Simonyan & Zisserman, 2015).

Layer names follow the MatConvNet and reference FCN files (``conv1_1`` ...
``conv5_3``/``conv5_4``, ``pool1`` ... ``pool5``) so that weights load by name.
"""

from keras import layers

from fcn_tf.backbones.features import Features

VGG_REPEATS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
VGG_FILTERS = (64, 128, 256, 512, 512)
FCN_INPUT_PADDING = 100


def scaled(filters, width_multiplier):
    """Channel count scaled by ``width_multiplier`` (at least 1)."""
    return max(1, int(round(filters * width_multiplier)))


def vgg(inputs, variant="vgg16", *, fcn_geometry=False, width_multiplier=1.0):
    """Build a VGG encoder on ``inputs``; return :class:`Features` ``P1``-``P5``.

    Args:
        inputs: Keras tensor ``(B, H, W, C)``.
        variant: ``"vgg16"`` or ``"vgg19"``.
        fcn_geometry: the reference FCN geometry (Long et al., 2015):
            ``conv1_1`` pads its input by 100 pixels and the 2x2 max pools
            round up (Caffe's ceil mode, which is TensorFlow's ``same`` padding
            for a 2x2/2 pool). Otherwise 3x3 ``same`` convolutions and
            flooring pools, as in torchvision and ``keras.applications``.
        width_multiplier: scales every channel count (1.0 is VGG; tests use
            small values for speed).
    """
    repeats = VGG_REPEATS[variant]
    features = Features()
    x = inputs
    if fcn_geometry:
        x = layers.ZeroPadding2D(FCN_INPUT_PADDING, name="conv1_1_pad")(x)
    for block, (count, filters) in enumerate(zip(repeats, VGG_FILTERS), start=1):
        for index in range(1, count + 1):
            first = fcn_geometry and block == 1 and index == 1
            x = layers.Conv2D(
                scaled(filters, width_multiplier),
                3,
                padding="valid" if first else "same",
                activation="relu",
                name=f"conv{block}_{index}",
            )(x)
        x = layers.MaxPooling2D(
            2, 2, padding="same" if fcn_geometry else "valid", name=f"pool{block}"
        )(x)
        features.add(block, x, 2**block)
    return features


def vgg16(inputs, **options):
    return vgg(inputs, "vgg16", **options)


def vgg19(inputs, **options):
    return vgg(inputs, "vgg19", **options)


def vgg_layer_names(variant):
    """Names of the convolution layers of ``variant``, in order."""
    return [
        f"conv{block}_{index}"
        for block, count in enumerate(VGG_REPEATS[variant], start=1)
        for index in range(1, count + 1)
    ]


__all__ = ["vgg", "vgg16", "vgg19", "vgg_layer_names"]
