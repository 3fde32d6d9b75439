"""Atrous (dilated) convolution: native dilation, and no taps that only read padding.

``tf.nn.convolution`` (what ``keras.layers.Conv2D`` calls) computes every
dilated convolution as ``SpaceToBatchND``, an undilated convolution and
``BatchToSpaceND``, because TensorFlow's own CPU kernels have no dilated
gradients. oneDNN's kernels (TensorFlow's CPU default on x86) and GPUs
have them: there a ``Conv2D`` op with its ``dilations`` attribute runs
directly. In a DeepLabV3+ MobileNetV2 train step (256x256, batch 2,
bfloat16, 2 cores) that took the step from 386 to 307 ms. Whether this
TensorFlow has dilated gradients is probed once (a 3x3 convolution of rate 2
on a 5x5 image and its gradients); without them the layer falls back to
Keras' space-to-batch path.

With ``padding="same"``, stride 1 and an odd kernel, the off-centre taps of
a convolution with dilation ``d`` read ``d`` or more pixels away from the
output pixel. Along an axis whose size is at most ``d``, every such tap falls
in the zero padding for every output pixel, so the convolution equals the
one whose kernel is cut to its centre along that axis (exactly, in the
forward pass and in both gradients: the cut taps' filter gradient is zero).
DeepLab's ASPP meets this when trained on crops: at output stride 16 a
256x256 crop gives a 16x16 map, where the rate-18 branch is a 1x1
convolution; computed as a 3x3 one, its filter gradient cost 72 ms of a
580 ms bfloat16 train step (``docs/PERFORMANCE.md``).

The cut is decided from the static shape when the graph is traced; with an
unknown size the full convolution runs. The weights are the full kernel in
both cases, so checkpoints do not depend on the input size.
"""

import functools

import keras
import tensorflow as tf


@functools.cache
def native_dilation_supported():
    """Whether ``Conv2D`` with ``dilations`` > 1 and its gradients run on the default device.

    Probed once per process, eagerly, and cached: oneDNN (TensorFlow's x86
    CPU default) and GPUs have the kernels; TensorFlow's own CPU kernels
    (``TF_ENABLE_ONEDNN_OPTS=0``, other CPUs) raise for the input gradient.
    """
    # init_scope runs the probe eagerly even while a function is traced
    # (it also pauses gradient tapes, so the gradient ops are called directly).
    with tf.init_scope():
        image, kernel = tf.ones((1, 5, 5, 1)), tf.ones((3, 3, 1, 1))
        options = {"strides": [1, 1, 1, 1], "padding": "SAME", "dilations": [1, 2, 2, 1]}
        try:
            out = tf.raw_ops.Conv2D(input=image, filter=kernel, **options)
            tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(image), filter=kernel, out_backprop=out, **options)
            tf.raw_ops.Conv2DBackpropFilter(
                input=image, filter_sizes=tf.shape(kernel), out_backprop=out, **options)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
            return False
    return True


@keras.saving.register_keras_serializable(package="fcn_tf")
class AtrousConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with native dilation, without the taps reading only padding.

    See the module docstring. Both apply to ``padding="same"``, stride 1, odd
    kernels and channels-last data; anything else is ``Conv2D`` itself.
    """

    def _applies(self):
        return (
            self.padding == "same"
            and self.data_format == "channels_last"
            and self.groups == 1
            and tuple(self.strides) == (1, 1)
            and all(size % 2 == 1 for size in self.kernel_size)
        )

    def convolution_op(self, inputs, kernel):
        if not self._applies():
            return super().convolution_op(inputs, kernel)
        dilation = list(self.dilation_rate)
        for axis in (0, 1):
            size = inputs.shape[1 + axis]
            if size is not None and self.kernel_size[axis] > 1 and dilation[axis] >= size:
                centre = self.kernel_size[axis] // 2
                kernel = kernel[centre:centre + 1] if axis == 0 else kernel[:, centre:centre + 1]
                dilation[axis] = 1
        if max(dilation) > 1 and native_dilation_supported():
            return tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME",
                                dilations=[1, *dilation, 1])
        return keras.ops.conv(
            inputs, kernel, strides=1, padding="same",
            dilation_rate=tuple(dilation), data_format="channels_last",
        )
