"""Resizing to a size known only at run time."""

import keras
from keras import ops


def resize_images(images, size, interpolation="bilinear"):
    """Resize ``images`` (NHWC) to ``size = (height, width)``, which may be tensors.

    ``keras.ops.image.resize`` needs a Python-int size in TensorFlow graphs,
    so with the TensorFlow backend this calls ``tf.image.resize`` (the same
    half-pixel-centre sampling) and lets the size be a tensor.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        method = {"bilinear": "bilinear", "nearest": "nearest"}[interpolation]
        out = tf.image.resize(images, size, method=method)
        return tf.cast(out, images.dtype)
    return ops.image.resize(images, size, interpolation=interpolation)


@keras.saving.register_keras_serializable(package="fcn_tf")
class ResizeLike(keras.layers.Layer):
    """Resize ``x`` to the height and width of ``reference`` (bilinear by default).

    DeepLabV3+ upsamples its ASPP output to the stride-4 features and its
    logits to the input this way, so the model accepts any input size.
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                "ResizeLike: interpolation must be 'bilinear' or 'nearest', "
                f"received {interpolation!r}."
            )
        self.interpolation = interpolation

    def call(self, x, reference):
        size = ops.shape(reference)
        return resize_images(x, (size[1], size[2]), self.interpolation)

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="fcn_tf")
class BroadcastLike(keras.layers.Layer):
    """Repeat a ``(B, 1, 1, C)`` tensor over the height and width of ``reference``.

    Bilinear resizing of a 1x1 map is a broadcast; this is the image-pooling
    branch of ASPP (Chen et al., 2017) at the runtime feature size.
    """

    def call(self, x, reference):
        size = ops.shape(reference)
        return ops.broadcast_to(x, (ops.shape(x)[0], size[1], size[2], ops.shape(x)[3]))

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])
