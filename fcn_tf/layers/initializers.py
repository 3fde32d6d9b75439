"""Bilinear initialisation of transposed convolutions (FCN's ``upscore`` layers)."""

import keras
import numpy as np


def bilinear_kernel(size, in_channels, out_channels):
    """Kernel ``(size, size, out_channels, in_channels)`` for bilinear upsampling.

    Channel ``c`` maps to channel ``c`` with the bilinear filter and all other
    pairs are zero, as in the reference FCN (Long et al., 2015, Sec. 3.3).
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.arange(size, dtype=np.float64)
    filt1d = 1 - np.abs(og - center) / factor
    filt = np.outer(filt1d, filt1d).astype(np.float32)
    kernel = np.zeros((size, size, out_channels, in_channels), dtype=np.float32)
    for c in range(min(in_channels, out_channels)):
        kernel[:, :, c, c] = filt
    return kernel


@keras.saving.register_keras_serializable(package="fcn_tf")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initializer for ``Conv2DTranspose`` kernels: bilinear interpolation.

    Example:
        >>> layer = keras.layers.Conv2DTranspose(
        ...     2, 4, strides=2, use_bias=False,
        ...     kernel_initializer=BilinearUpsampling())
    """

    def __call__(self, shape, dtype=None):
        kh, kw, out_channels, in_channels = shape
        if kh != kw:
            raise ValueError(
                f"BilinearUpsampling needs a square kernel, received {kh}x{kw}."
            )
        kernel = bilinear_kernel(kh, in_channels, out_channels)
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}
