"""Depthwise convolution whose gradients are computed in float32 under bfloat16.

A depthwise convolution has no dot products for the CPU's bfloat16 units to
work on, and oneDNN's bfloat16 depthwise gradient kernels were slower than
the float32 ones plus the casts around them: in a DeepLabV3+ MobileNetV2
train step (256x256, batch 2, ``mixed_bfloat16``, 2 cores with AVX512-BF16)
the 17 depthwise gradients took 36 ms of thread time in bfloat16. Computing
the whole layer in float32 made the step 8% faster (322 -> 297 ms) but
inference 5% slower; this layer keeps the forward pass in the compute dtype
and only takes the gradients in float32 (``docs/PERFORMANCE.md``).

:class:`DepthwiseConv2D` is ``keras.layers.DepthwiseConv2D`` (same
arguments, weights and names). In float32, and with a bias, it is that
layer unchanged.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="fcn_tf")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` with float32 gradients under bfloat16 (see module docstring)."""

    def _depthwise(self, inputs, kernel):
        return keras.ops.depthwise_conv(
            inputs, kernel, strides=self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format,
        )

    def call(self, inputs):
        if self.use_bias or inputs.dtype != tf.bfloat16:
            return super().call(inputs)

        @tf.custom_gradient
        def depthwise(x, kernel):
            def gradient(upstream):
                # The float32 forward pass is run again here only to let the tape
                # take its gradients (any stride, padding and dilation Keras
                # supports); a depthwise forward pass costs about a tenth of its
                # gradients (3 against 36 ms of thread time per step in bfloat16).
                x32, kernel32 = tf.cast(x, tf.float32), tf.cast(kernel, tf.float32)
                with tf.GradientTape() as tape:
                    tape.watch([x32, kernel32])
                    y32 = self._depthwise(x32, kernel32)
                grad_x, grad_kernel = tape.gradient(
                    y32, [x32, kernel32], output_gradients=tf.cast(upstream, tf.float32))
                return tf.cast(grad_x, x.dtype), tf.cast(grad_kernel, kernel.dtype)

            return self._depthwise(x, kernel), gradient

        return self.activation(depthwise(inputs, tf.convert_to_tensor(self.kernel)))
