"""Padding an input so that its size is a multiple of the network's stride."""

import keras
from keras import ops


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
        pad_h = (-size[1]) % self.multiple
        pad_w = (-size[2]) % self.multiple
        return ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        def padded(n):
            return None if n is None else n + (-n) % self.multiple

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}
