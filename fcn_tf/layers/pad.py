"""Zero-padding at run time: up to a multiple of a stride, or to another map's size."""

import keras
from keras import ops


def pad_spatial(x, top, bottom, left, right):
    """Zero-pad NHWC ``x`` by amounts known only at run time, keeping the channels known.

    Written as concatenations with zero blocks rather than ``Pad``: the
    LiteRT converter's shape inference knows nothing of a ``Pad`` output whose
    paddings are computed at run time, not even its channels, and then
    refuses the convolutions that follow ("tf.Conv2D op is neither a custom op
    nor a flex op"). A concatenation keeps the channel count.
    """
    channels = x.shape[-1]
    size = ops.shape(x)
    column = lambda rows, width: ops.zeros((size[0], rows, width, channels), x.dtype)  # noqa: E731
    x = ops.concatenate([column(top, size[2]), x, column(bottom, size[2])], axis=1)
    height = size[1] + top + bottom
    return ops.concatenate([column(height, left), x, column(height, right)], axis=2)


@keras.saving.register_keras_serializable(package="fcn_tf")
class PadToMultiple(keras.layers.Layer):
    """Zero-pad height and width at the bottom/right up to a multiple of ``multiple``.

    Networks whose skip connections add or concatenate maps of two scales
    (U-Net, the all-deconvolution FCN) need sizes divisible by their total
    stride; the model pads here and crops its output back with
    :class:`fcn_tf.layers.CropLike` (offset 0), so any size goes in and the
    same size comes out.
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        size = ops.shape(x)
        # (m - n % m) % m, not (-n) % m: ONNX converters map a modulo of a
        # negative number to C's remainder (-67 % 8 = -3), which crops instead.
        pad_h = (self.multiple - size[1] % self.multiple) % self.multiple
        pad_w = (self.multiple - size[2] % self.multiple) % self.multiple
        return pad_spatial(x, 0, pad_h, 0, pad_w)

    def compute_output_shape(self, input_shape):
        def padded(n):
            return None if n is None else n + (-n) % self.multiple

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="fcn_tf")
class CenterPadLike(keras.layers.Layer):
    """Zero-pad ``x`` to the height and width of ``reference``, centred.

    The counterpart of :class:`fcn_tf.layers.CenterCropLike`: ``reference``
    must be at least as large as ``x``; of the ``diff`` missing rows (and
    columns) ``diff // 2`` go before and ``diff - diff // 2`` after. This is
    how milesial/Pytorch-UNet's ``Up`` pads each upsampled map to its skip
    (``F.pad``) before concatenating them.

    Example:
        >>> import numpy as np
        >>> x = np.ones((1, 1, 2, 1), "float32")
        >>> ref = np.zeros((1, 3, 5, 1), "float32")
        >>> CenterPadLike()(x, ref)[0, :, :, 0].numpy().tolist()
        [[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    """

    def call(self, x, reference):
        x_size = ops.shape(x)
        size = ops.shape(reference)
        dy = size[1] - x_size[1]
        dx = size[2] - x_size[2]
        return pad_spatial(x, dy // 2, dy - dy // 2, dx // 2, dx - dx // 2)

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])
