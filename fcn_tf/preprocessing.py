"""Input normalisation: the one contract between data, weights and models.

Every model in this package takes RGB (or single-channel) float images that
were normalised as ``(pixel - mean) / std`` with pixels in ``[0, 255]``. The
mean and std depend on how the backbone's weights were trained:

- ``vgg``: MatConvNet / Caffe VGG, mean subtraction only. The RGB mean
  ``[123.68, 116.779, 103.939]`` is the one in ``imagenet-vgg-verydeep-16.mat``;
  :func:`fcn_tf.load_weights` returns the exact mean stored in the file.
- ``inception``: Keras applications' MobileNetV2 and Xception convention,
  ``x / 127.5 - 1``.
- ``unit``: scale to ``[0, 1]`` (models trained from scratch, e.g. U-Net).

Example:
    >>> import numpy as np
    >>> p = Preprocessing.preset("inception")
    >>> p.apply_numpy(np.full((1, 1, 3), 255.0)).tolist()
    [[[1.0, 1.0, 1.0]]]
"""

import dataclasses

import numpy as np
import tensorflow as tf

from fcn_tf.utils.names import unknown_name_message

VGG_MEAN_RGB = (123.68, 116.779, 103.939)
# ITU-R 601-2 luma, as Pillow's convert("L").
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_PRESETS = {
    "vgg": (VGG_MEAN_RGB, (1.0, 1.0, 1.0)),
    "inception": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Per-channel ``(pixel - mean) / std`` normalisation, pixels in [0, 255].

    Args:
        mean: per-channel mean, in the model's input channel order (RGB).
        std: per-channel divisor.
    """

    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (255.0, 255.0, 255.0)

    def __post_init__(self):
        mean = tuple(float(m) for m in np.ravel(self.mean))
        std = tuple(float(s) for s in np.ravel(self.std))
        if len(mean) != len(std):
            raise ValueError(
                f"Preprocessing mean and std need the same length, received "
                f"mean={mean} and std={std}."
            )
        if any(s == 0 for s in std):
            raise ValueError(f"Preprocessing std must be non-zero, received {std}.")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def preset(cls, name, channels=3):
        """A named preset (``vgg``, ``inception``, ``unit``) for ``channels`` inputs."""
        if name not in _PRESETS:
            raise ValueError(unknown_name_message("preprocessing preset", name, _PRESETS))
        mean, std = _PRESETS[name]
        return cls(mean=mean, std=std).for_channels(channels)

    def for_channels(self, channels):
        """Adapt to ``channels`` inputs (grayscale: the channel average)."""
        if channels == len(self.mean):
            return self
        if channels == 1:
            return Preprocessing((float(np.mean(self.mean)),), (float(np.mean(self.std)),))
        if len(self.mean) == 1:
            return Preprocessing(self.mean * channels, self.std * channels)
        raise ValueError(
            f"Cannot adapt a {len(self.mean)}-channel normalisation to {channels} "
            "channels; give 'mean' and 'std' with one value per channel."
        )

    def apply(self, images):
        """``(pixels - mean) / std`` of pixels in [0, 255] (channels last) as float32.

        The one normalisation of the package: the data pipeline, the
        exported graph and inference all call it. A tensor (also inside
        ``tf.data`` and ``tf.function``) gives a tensor.
        """
        images = tf.cast(images, tf.float32)
        return (images - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)

    def apply_numpy(self, images):
        """:meth:`apply` for a NumPy array; returns a NumPy array."""
        return self.apply(np.asarray(images)).numpy()

    def to_dict(self):
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data):
        return cls(mean=tuple(data["mean"]), std=tuple(data["std"]))


def rgb_to_luma(rgb):
    """``[..., 3]`` RGB pixels to ``[..., 1]`` uint8 luma (ITU-R 601-2, rounded, as Pillow's "L").

    The one RGB-to-grayscale conversion: the data pipeline, predict and the
    exported graph use it. A NumPy array gives a NumPy array.

    Example:
        >>> rgb_to_luma(np.array([[255, 255, 255]], np.uint8)).tolist()
        [[255]]
    """
    pixels = tf.cast(rgb[..., :3], tf.float32)
    luma = tf.reduce_sum(pixels * tf.constant(LUMA_WEIGHTS, tf.float32), -1, keepdims=True)
    luma = tf.cast(tf.round(luma), tf.uint8)
    return luma.numpy() if isinstance(rgb, np.ndarray) else luma
