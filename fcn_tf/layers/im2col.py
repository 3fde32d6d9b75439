"""Convolution as one matrix product over explicit patches (im2col).

FCN's ``fc6`` (a 7x7 convolution from 512 to 4096 channels) and ``fc7``
(1x1, 4096 to 4096) are VGG's fully connected layers made convolutional:
huge kernels applied to maps of a few pixels (7x7 at 224x224). oneDNN's
convolution kernels are built for the opposite case, and on 2 cores
(AVX512-BF16) they ran these layers 2.5-3.5x slower than ``tf.matmul`` on
the same numbers: fc6 forward and both gradients 640 ms in bfloat16 (830 ms
float32) against 210 (540) ms as a matrix product, fc7 121 against 35 ms
(batch 2, ``docs/PERFORMANCE.md``).

:class:`Im2ColConv2D` is ``keras.layers.Conv2D`` (same arguments, weights and
names) that gathers each output pixel's ``kh x kw x C`` input patch with
``kh * kw`` slices concatenated along the channels, and multiplies them with
the kernel reshaped to ``(kh * kw * C, filters)``: plain slices, concatenation
and matmul, which every TensorFlow device and TFLite run. The patches take
``kh * kw`` times the input's memory, so use it where the input map is small
and the kernel large; it applies to ``padding="valid"``, stride 1, no
dilation and channels-last data (anything else is ``Conv2D`` itself).
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="fcn_tf")
class Im2ColConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` computed as patches times a matrix (see module docstring)."""

    def _applies(self):
        return (
            self.padding == "valid"
            and self.data_format == "channels_last"
            and self.groups == 1
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
        )

    def convolution_op(self, inputs, kernel):
        if not self._applies():
            return super().convolution_op(inputs, kernel)
        kernel_height, kernel_width = self.kernel_size
        shape = tf.shape(inputs)
        out_height = shape[1] - kernel_height + 1
        out_width = shape[2] - kernel_width + 1
        # Row-major (kh, kw, C) order, as the kernel's HWIO layout flattens.
        patches = [
            inputs[:, row:row + out_height, column:column + out_width, :]
            for row in range(kernel_height) for column in range(kernel_width)
        ]
        patches = patches[0] if len(patches) == 1 else tf.concat(patches, axis=-1)
        matrix = tf.reshape(kernel, (-1, self.filters))
        return tf.tensordot(patches, matrix, axes=1)
