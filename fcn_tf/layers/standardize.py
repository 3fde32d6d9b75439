"""Per-image standardisation of the input: each image's own exposure removed.

Recordings of one street differ first in exposure and white balance (CamVid's
recording 0006R0 averages 139 on the 0-255 scale, 0016E5 104 and the dusk
recording 0001TP 55). A network that sees every image with zero mean and unit
variance per channel (instance normalisation of the input, Ulyanov, Vedaldi &
Lempitsky 2016) is invariant to a global gain and offset of each channel, so
those differences between recordings never reach its first convolution.
"""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="fcn_tf")
class ImageStandardize(layers.Layer):
    """``(x - mean) / sqrt(var + epsilon)`` with mean and variance over each image's H, W.

    Computed in float32 whatever the dtype policy (the statistics of a whole
    image in bfloat16 lose the small terms); the output is float32 and the
    next layer casts it to its compute dtype.
    """

    def __init__(self, epsilon=1e-3, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        x = ops.cast(x, "float32")
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=(1, 2), keepdims=True)
        return (x - mean) * ops.rsqrt(variance + self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
