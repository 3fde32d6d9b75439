"""Cropping one feature map to the spatial size of another, at run time."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fcn_tf")
class CropLike(keras.layers.Layer):
    """Crop ``x`` to the height and width of ``reference``, starting at ``offset``.

    This is Caffe's ``Crop`` layer as FCN uses it (Long et al., 2015): the
    skip scores and the final upsampled scores are cropped with fixed offsets
    (5, 9 and 31 in FCN-8s) that follow from the network's padding and strides.

    Args:
        offset: rows and columns skipped at the top-left; an int or ``(dy, dx)``.

    Example:
        >>> import numpy as np
        >>> x = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
        >>> ref = np.zeros((1, 2, 3, 1), "float32")
        >>> CropLike(1)(x, ref)[0, :, :, 0].numpy().tolist()
        [[6.0, 7.0, 8.0], [11.0, 12.0, 13.0]]
    """

    def __init__(self, offset=0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(offset, int):
            offset = (offset, offset)
        self.offset = tuple(int(o) for o in offset)

    def call(self, x, reference):
        size = ops.shape(reference)
        dy, dx = self.offset
        return x[:, dy : dy + size[1], dx : dx + size[2], :]

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


@keras.saving.register_keras_serializable(package="fcn_tf")
class CenterCropLike(keras.layers.Layer):
    """Crop ``x`` around its centre to the height and width of ``reference``.

    U-Net with valid convolutions crops each skip feature map this way before
    concatenating it with the upsampled one (Ronneberger et al., 2015).
    """

    def call(self, x, reference):
        x_size = ops.shape(x)
        size = ops.shape(reference)
        dy = (x_size[1] - size[1]) // 2
        dx = (x_size[2] - size[2]) // 2
        return x[:, dy : dy + size[1], dx : dx + size[2], :]

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])
