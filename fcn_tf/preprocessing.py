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

from fcn_tf.utils.names import unknown_name_message

VGG_MEAN_RGB = (123.68, 116.779, 103.939)

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

    def apply_numpy(self, images):
        """Normalise a NumPy array of pixels in [0, 255] (channels last)."""
        images = np.asarray(images, dtype=np.float32)
        return (images - np.float32(self.mean)) / np.float32(self.std)

    def apply(self, images):
        """Normalise a tensor of pixels in [0, 255] (channels last), any backend."""
        from keras import ops

        images = ops.cast(images, "float32")
        mean = ops.convert_to_tensor(np.float32(self.mean))
        std = ops.convert_to_tensor(np.float32(self.std))
        return (images - mean) / std

    def to_dict(self):
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data):
        return cls(mean=tuple(data["mean"]), std=tuple(data["std"]))
