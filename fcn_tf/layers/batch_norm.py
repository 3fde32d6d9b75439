"""BatchNorm through TensorFlow's fused kernel.

Keras 3's ``BatchNormalization`` computes with separate ops: ``Mean``,
``SquaredDifference``, ``Mul``, ``Sub`` and, under mixed precision, a cast of
the whole tensor to float32 and back. Each is a pass over the feature map;
on a 2-core CPU they add up to about 8% of a DeepLabV3+ train step, and they
keep TensorFlow's graph optimiser from merging a convolution with the
BatchNorm and ReLU after it in inference (its oneDNN ``_FusedConv2D``).

:class:`BatchNormalization` here is Keras' layer with the same arguments,
weights (``gamma``, ``beta``, ``moving_mean``, ``moving_variance``), names
and semantics, that runs 4-D channels-last inputs through one
``FusedBatchNormV3`` op (forward) and ``FusedBatchNormGradV3`` (backward),
in the input's dtype (bfloat16 stays bfloat16; the statistics are float32).
The moving statistics are updated as Keras does: ``moving = moving *
momentum + batch * (1 - momentum)``, with the batch variance over N*H*W
values (not the unbiased estimate the fused op reports, which is converted
back). bfloat16 inputs whose channel count is not a multiple of 16 are
normalised in float32: oneDNN's bfloat16 kernel was 11x slower than its
float32 one at 8 channels (the default U-Net's first level). Anything else
(masks, synchronized BatchNorm, other ranks or axes, a backend other than
TensorFlow) goes through Keras' own implementation.
Measured effect: ``docs/PERFORMANCE.md``.
"""

import keras
import tensorflow as tf

# bfloat16 inputs whose channel count is not a multiple of this are normalised in float32.
BFLOAT16_CHANNEL_BLOCK = 16


@keras.saving.register_keras_serializable(package="fcn_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` on TensorFlow's fused kernel (see module docstring)."""

    def _fused(self, inputs, mask):
        return (
            mask is None
            and not self.synchronized
            and not self.renorm
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        dtype = inputs.dtype if inputs.dtype in (tf.float32, tf.bfloat16, tf.float16) else tf.float32
        if dtype == tf.bfloat16 and channels % BFLOAT16_CHANNEL_BLOCK:
            # oneDNN's bfloat16 kernel falls back to a slow path for such channel
            # counts (8 channels: 19.5 ms against 1.8 ms in float32, fwd + bwd).
            dtype = tf.float32
        x = tf.cast(inputs, dtype)
        gamma = self.gamma if self.scale else tf.ones((channels,), tf.float32)
        beta = self.beta if self.center else tf.zeros((channels,), tf.float32)
        gamma = tf.cast(gamma, tf.float32)
        beta = tf.cast(beta, tf.float32)
        if training and self.trainable:
            outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta,
                mean=tf.zeros((channels,), tf.float32),
                variance=tf.ones((channels,), tf.float32),
                epsilon=self.epsilon, exponential_avg_factor=1.0,
                data_format="NHWC", is_training=True,
            )
            # The op reports the unbiased variance (n / (n - 1)); Keras tracks
            # the biased one.
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
            variance = variance * tf.maximum(count - 1.0, 0.0) / tf.maximum(count, 1.0)
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(
                self.moving_variance * momentum + variance * (1.0 - momentum)
            )
        else:
            outputs, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon, data_format="NHWC", is_training=False,
            )
        return tf.cast(outputs, self.compute_dtype)
