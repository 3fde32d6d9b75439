"""Resizing to a size known only at run time."""

import keras
from keras import ops


def resize_images(images, size, interpolation="bilinear", align_corners=False):
    """Resize ``images`` (NHWC) to ``size = (height, width)``, which may be tensors.

    ``keras.ops.image.resize`` needs a Python-int size in TensorFlow graphs,
    so with the TensorFlow backend this calls ``tf.image.resize`` (the same
    half-pixel-centre sampling) and lets the size be a tensor.

    ``align_corners=True`` (bilinear only) samples as PyTorch's
    ``F.interpolate(..., align_corners=True)`` and TF1's
    ``resize_bilinear(align_corners=True)``: the corner pixels of input and
    output coincide, output pixel ``i`` reads input position
    ``i * (in - 1) / (out - 1)``. Models ported from such code need it for
    equal logits (:func:`resize_bilinear_align_corners`).
    """
    if align_corners:
        if interpolation != "bilinear":
            raise ValueError(
                "resize_images: align_corners=True needs interpolation='bilinear', "
                f"received {interpolation!r}."
            )
        return resize_bilinear_align_corners(images, size)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        method = {"bilinear": "bilinear", "nearest": "nearest"}[interpolation]
        out = tf.image.resize(images, size, method=method)
        return tf.cast(out, images.dtype)
    return ops.image.resize(images, size, interpolation=interpolation)


def _align_corners_axis(images, in_size, out_size, axis):
    """Linear interpolation along one axis with aligned corners (sizes may be tensors)."""
    scale = ops.cast(in_size - 1, "float32") / ops.cast(ops.maximum(out_size - 1, 1), "float32")
    position = ops.cast(ops.arange(out_size), "float32") * scale
    lower = ops.minimum(ops.cast(ops.floor(position), "int32"), in_size - 1)
    upper = ops.minimum(lower + 1, in_size - 1)
    weight = ops.cast(position - ops.cast(lower, "float32"), images.dtype)
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    weight = ops.reshape(weight, shape)
    low = ops.take(images, lower, axis=axis)
    high = ops.take(images, upper, axis=axis)
    return low + (high - low) * weight


def resize_bilinear_align_corners(images, size):
    """Bilinear resize of NHWC ``images`` to ``size`` with ``align_corners=True``.

    Written with ``keras.ops`` only, separably (rows, then columns), so it
    runs on every backend and at any run-time size; the same numbers as
    ``torch.nn.functional.interpolate(x, size, mode="bilinear",
    align_corners=True)``.

    Example:
        >>> import numpy as np
        >>> x = np.array([0.0, 3.0], "float32").reshape(1, 1, 2, 1)
        >>> np.asarray(resize_bilinear_align_corners(x, (1, 4)))[0, 0, :, 0].tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    shape = ops.shape(images)
    x = _align_corners_axis(images, shape[1], size[0], axis=1)
    return _align_corners_axis(x, shape[2], size[1], axis=2)


@keras.saving.register_keras_serializable(package="fcn_tf")
class ResizeLike(keras.layers.Layer):
    """Resize ``x`` to the height and width of ``reference`` (bilinear by default).

    DeepLabV3+ upsamples its ASPP output to the stride-4 features and its
    logits to the input this way, so the model accepts any input size.
    ``align_corners=True`` samples as PyTorch's ``align_corners=True``
    (see :func:`resize_images`).
    """

    def __init__(self, interpolation="bilinear", align_corners=False, **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                "ResizeLike: interpolation must be 'bilinear' or 'nearest', "
                f"received {interpolation!r}."
            )
        if align_corners and interpolation != "bilinear":
            raise ValueError(
                "ResizeLike: align_corners=True needs interpolation='bilinear', "
                f"received {interpolation!r}."
            )
        self.interpolation = interpolation
        self.align_corners = bool(align_corners)

    def call(self, x, reference):
        size = ops.shape(reference)
        return resize_images(
            x, (size[1], size[2]), self.interpolation, align_corners=self.align_corners
        )

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])

    def get_config(self):
        config = {**super().get_config(), "interpolation": self.interpolation}
        if self.align_corners:
            config["align_corners"] = True
        return config


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
