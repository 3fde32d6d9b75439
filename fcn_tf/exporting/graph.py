"""The serving graph: uint8 RGB pixels or encoded images in, class ids and probabilities out.

:func:`serving_module` wraps a Keras model (on normalised images) in a
``tf.Module`` whose functions take what a client has, with the normalisation
inside:

- ``serve_images``: ``images`` uint8 ``[batch, height, width, 3]`` (any
  height and width) -> ``class_ids`` int32 ``[batch, height, width]`` and
  ``probabilities`` float32 ``[batch, height, width, classes]``;
- ``serve_bytes``: ``image_bytes`` string ``[batch]`` of encoded JPEG / PNG
  (/ BMP / GIF) images, all of one size -> the same outputs;
- ``logits``: float32 pixels ``[batch, height, width, input_channels]`` in
  [0, 255] -> logits (what predict's test-time augmentation calls);
- ``from_rgb``: the untraced uint8 -> outputs function the LiteRT and ONNX
  converters trace.

Grayscale models (``image_channels`` 1) take the same 3-channel RGB inputs;
the graph converts them to luma (ITU-R 601-2, as the data pipeline does).
:func:`export_saved_model` saves the module with ``serve_images`` and
``serve_bytes`` as the signatures :data:`~fcn_tf.signatures.SIGNATURE_IMAGES`
and :data:`~fcn_tf.signatures.SIGNATURE_BYTES`.

Example:
    >>> module = export_saved_model(model, Preprocessing.preset("unit", 3), "out")  # doctest: +SKIP
    >>> module.serve_images(images)["class_ids"]                                   # doctest: +SKIP
"""

import tensorflow as tf

from fcn_tf.outputs import logits_to_classes, logits_to_probabilities
from fcn_tf.preprocessing import rgb_to_luma
from fcn_tf.signatures import SIGNATURE_BYTES, SIGNATURE_IMAGES

# Node names that appear in the error of a wrongly shaped input.
SHAPE_CHECK_IMAGES = "images_must_be_batch_height_width_3_uint8_rgb"
SHAPE_CHECK_PIXELS = "pixels_must_be_batch_height_width_channels_float32"
SHAPE_CHECK_BYTES = "image_bytes_must_be_a_list_of_encoded_images_not_one_string"


def serving_module(model, preprocessing, channels, jit_compile=False):
    """A ``tf.Module`` holding the model (weights stored once) and its serving functions.

    Args:
        model: the Keras model (on normalised images).
        preprocessing: its :class:`~fcn_tf.preprocessing.Preprocessing`, for
            ``channels`` channels.
        channels: the model's input channels (1: grayscale, fed luma).
        jit_compile: compile the network with XLA: faster per call at a fixed
            size, but every new input size is compiled again (seconds; see
            docs/PERFORMANCE.md), so it is off unless the served sizes are few.
    """
    # One traced function holds the network; every function below calls it, so
    # the model is traced (and stored in the graph) once.
    network = _network(model, preprocessing, channels, jit_compile)

    def from_rgb(images):
        pixels = tf.cast(rgb_to_luma(images) if channels == 1 else images, tf.float32)
        return _outputs(network(pixels))

    module = tf.Module()
    module.model = model
    module.serve_images = _serve_images(from_rgb)
    module.serve_bytes = _serve_bytes(from_rgb)
    module.logits = _logits(network, channels)
    module.from_rgb = from_rgb
    return module


def export_saved_model(model, preprocessing, path, channels=None, jit_compile=False):
    """Save ``model`` with its serving signatures to ``path``; return the :func:`serving_module`."""
    channels = channels or int(model.input_shape[-1])
    module = serving_module(model, preprocessing.for_channels(channels), channels, jit_compile)
    signatures = {SIGNATURE_IMAGES: module.serve_images.get_concrete_function(),
                  SIGNATURE_BYTES: module.serve_bytes.get_concrete_function()}
    tf.saved_model.save(module, path, signatures=signatures)
    return module


def _outputs(logits):
    return {"class_ids": logits_to_classes(logits),
            "probabilities": logits_to_probabilities(logits)}


def _network(model, preprocessing, channels, jit_compile):
    """float32 pixels ``[B, H, W, channels]`` -> float32 logits, normalisation inside."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)],
                 jit_compile=jit_compile)
    def logits_of_pixels(pixels):
        return tf.cast(model(preprocessing.apply(pixels), training=False), tf.float32)

    return logits_of_pixels


def _serve_images(from_rgb):
    """The ``serving_default`` function: uint8 ``[B, H, W, 3]`` images, checked at run time."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_images(images):
        # The signature's shape is not enforced on a loaded model: check it at run time.
        images = tf.ensure_shape(images, [None, None, None, 3], name=SHAPE_CHECK_IMAGES)
        with tf.control_dependencies([tf.debugging.assert_positive(
                tf.shape(images)[:3],
                message="serving_default: images must have batch, height and width >= 1 "
                        "([batch, height, width, 3] uint8); received an empty batch or image")]):
            images = tf.identity(images)
        return from_rgb(images)

    return serve_images


def _serve_bytes(from_rgb):
    """The ``serving_bytes`` function: a batch of encoded images of one size."""
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        # The signature's shape is not enforced on a loaded model: a single string
        # would otherwise fail deep inside map_fn ("slice index 0").
        image_bytes = tf.ensure_shape(image_bytes, [None], name=SHAPE_CHECK_BYTES)
        tf.debugging.assert_positive(
            tf.size(image_bytes),
            message="serving_bytes: received an empty batch; send at least one encoded image.")
        first = tf.io.decode_image(image_bytes[0], channels=3, expand_animations=False)
        images = tf.map_fn(lambda data: _decode_same_size(data, tf.shape(first)[:2]),
                           image_bytes, fn_output_signature=tf.TensorSpec([None, None, 3],
                                                                          tf.uint8))
        return from_rgb(images)

    return serve_bytes


def _decode_same_size(data, first_shape):
    """One encoded image as uint8 RGB; an error unless its size is ``first_shape``."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], first_shape))
    with tf.control_dependencies([tf.debugging.Assert(same, [
            "serving_bytes: every image of one request must have the same height and "
            "width; the first is", first_shape, "this one is", tf.shape(image)[:2],
            ". Send images of different sizes in separate requests."])]):
        return tf.identity(image)


def _logits(network, channels):
    """The ``logits`` function: float32 pixels in [0, 255], shape checked at run time."""
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32,
                                                name="pixels")])
    def logits(pixels):
        pixels = tf.ensure_shape(pixels, [None, None, None, channels], name=SHAPE_CHECK_PIXELS)
        return network(pixels)

    return logits
