"""The LiteRT and ONNX files of an export, and what each one takes and gives.

Each file is converted from the same uint8 serving function as the
SavedModel (:func:`fcn_tf.exporting.graph.serving_module`), on a float32
copy of the model (LiteRT and ONNX have no bfloat16 kernels):

- LiteRT: one file per precision (``model.tflite``, ``model_float16.tflite``,
  ``model_int8.tflite``, ``model_int8_full.tflite``), uint8 ``[1, H, W, 3]``
  with free height and width unless a size is fixed
  (:mod:`fcn_tf.runtimes.litert`);
- ONNX: ``model.onnx`` / ``model_int8.onnx``, uint8 ``[batch, H, W, 3]``
  (:mod:`fcn_tf.runtimes.onnx`).

:func:`write_artifacts` writes them and returns the ``artifacts`` entries of
``metadata.json``. An ``int8_full`` LiteRT file is calibrated on
:func:`representative_images` of the training split.

Example:
    >>> entries = write_artifacts("out", model, preprocessing, 3,
    ...                           tflite_precisions=("float32", "int8"))  # doctest: +SKIP
"""

import os

import numpy as np
import tensorflow as tf

from fcn_tf.exporting.graph import serving_module
from fcn_tf.fidelity import raw_rgb_batches
from fcn_tf.precision import with_precision
from fcn_tf.runs.folder import model_classes
from fcn_tf.runtimes import litert
from fcn_tf.runtimes import onnx as onnx_runtime

TFLITE_FILE = litert.file_name("float32")
TFLITE_PRECISIONS = litert.PRECISIONS
ONNX_FILE = onnx_runtime.file_name("float32")
ONNX_PRECISIONS = onnx_runtime.PRECISIONS
# Training images that calibrate the activation ranges of an int8_full file.
REPRESENTATIVE_COUNT = 32
# The largest fixed LiteRT height or width accepted.
MAX_TFLITE_SIDE = 16384


def float32_copy(model):
    """``model`` itself if every layer computes in float32, else a float32 copy.

    LiteRT and ONNX have no bfloat16 kernels, so a model trained with a mixed
    policy (``mixed_bfloat16``/``mixed_float16``; its variables are float32
    anyway) is rebuilt with float32 layers and given the same weights before
    conversion.
    """
    return with_precision(model, "float32")


def representative_images(config, count=REPRESENTATIVE_COUNT, size=None):
    """Up to ``count`` uint8 ``[1, H, W, 3]`` training images, for ``int8_full`` calibration.

    Taken in file order from ``config``'s training split at full resolution
    (or resized to ``size``), as the exported graph sees them: raw RGB.
    """
    images = []
    for image, _ in raw_rgb_batches(config, "train").take(count):
        if size:
            image = tf.image.resize(image, size)
        images.append(np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8))
    return images


def checked_precisions(value, enabled, check):
    """A tuple of checked precisions: one name or several, or () when the format is off."""
    if not enabled:
        return ()
    names = (value,) if isinstance(value, str) else tuple(value)
    for name in names:
        check(name)
    return tuple(dict.fromkeys(names))


def check_tflite_size(tflite_size):
    """Raise unless ``tflite_size`` is ``None`` or ``[height, width]`` in range."""
    if tflite_size is not None and not (len(tflite_size) == 2 and all(
            1 <= int(v) <= MAX_TFLITE_SIDE for v in tflite_size)):
        raise ValueError(f"tflite_size: expected [height, width] between 1 and "
                         f"{MAX_TFLITE_SIDE}, received {list(tflite_size)}. Leave it out for "
                         "any height and width.")


def write_artifacts(folder, model, preprocessing, channels, *, tflite_precisions=(),
                    tflite_size=None, onnx_precisions=(), representative=None):
    """Write the LiteRT and ONNX files into ``folder``; return their metadata entries.

    Args:
        folder: the export folder being written.
        model: the Keras model (on normalised images), in any precision.
        preprocessing: its :class:`~fcn_tf.preprocessing.Preprocessing`.
        channels: the model's input channels.
        tflite_precisions: the LiteRT files to write, by precision.
        tflite_size: ``(height, width)`` fixing the LiteRT input; ``None``: free.
        onnx_precisions: the ONNX files to write, by precision.
        representative: uint8 images calibrating ``int8_full``.

    Returns:
        ``{file name: {"runtime", "precision", "free_size", "input", "outputs", ...}}``.
    """
    if not tflite_precisions and not onnx_precisions:
        return {}
    module = serving_module(float32_copy(model), preprocessing, channels)
    num_classes = model_classes(model)
    entries = {}
    for precision in tflite_precisions:
        name = litert.file_name(precision)
        _write_bytes(os.path.join(folder, name), litert.convert(
            module.model, module.from_rgb, precision, tflite_size, representative))
        entries[name] = _litert_entry(precision, tflite_size, num_classes)
    for precision in onnx_precisions:
        name = onnx_runtime.file_name(precision)
        _write_bytes(os.path.join(folder, name), onnx_runtime.convert(module.from_rgb, precision))
        entries[name] = _onnx_entry(precision, num_classes)
    return entries


def _litert_entry(precision, tflite_size, num_classes):
    size = f"{tflite_size[0]}, {tflite_size[1]}" if tflite_size else "height, width"
    return {"runtime": "litert", "precision": precision, "free_size": tflite_size is None,
            "input": f"images uint8 [1, {size}, 3] RGB",
            "outputs": {"class_ids": f"int32 [1, {size}]",
                        "probabilities": f"float32 [1, {size}, {num_classes}]"}}


def _onnx_entry(precision, num_classes):
    return {"runtime": "onnx", "precision": precision, "free_size": True,
            "opset": onnx_runtime.OPSET, "input": "images uint8 [batch, height, width, 3] RGB",
            "outputs": {"class_ids": "int32 [batch, height, width]",
                        "probabilities": f"float32 [batch, height, width, {num_classes}]"}}


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)
