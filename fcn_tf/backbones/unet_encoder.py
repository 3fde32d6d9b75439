"""The U-Net contracting path (Ronneberger et al., 2015)."""

from keras import layers

from fcn_tf.backbones.features import Features
from fcn_tf.layers import BatchNormalization


def double_conv(x, filters, prefix, padding="same", batch_norm=True):
    """Two 3x3 convolutions, each followed by BatchNorm (optional) and ReLU.

    BatchNorm uses PyTorch's defaults (momentum 0.1, i.e. Keras 0.9, and eps
    1e-5), as the common U-Net implementations do: the running statistics
    follow the weights within tens of steps, which short trainings need.
    """
    for index in (1, 2):
        x = layers.Conv2D(
            filters, 3, padding=padding, use_bias=not batch_norm,
            name=f"{prefix}_conv{index}",
        )(x)
        if batch_norm:
            x = BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{prefix}_bn{index}")(x)
        x = layers.ReLU(name=f"{prefix}_relu{index}")(x)
    return x


def unet_encoder(inputs, *, base_filters=64, depth=4, padding="same", batch_norm=True):
    """Build the contracting path; return :class:`Features` ``P0``-``P{depth}``.

    Level ``n`` has ``base_filters * 2**n`` channels at stride ``2**n``; the
    deepest level is the bottleneck (1024 channels in the paper).
    """
    features = Features()
    x = inputs
    for level in range(depth + 1):
        if level:
            x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
        x = double_conv(x, base_filters * 2**level, f"enc{level}", padding, batch_norm)
        features.add(level, x, 2**level)
    return features
