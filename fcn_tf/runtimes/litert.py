"""LiteRT (``.tflite``) files: conversion from a serving function, and reading with ``ai-edge-litert``.

The file has one signature, ``serving_default``: ``images`` uint8
``[1, H, W, 3]`` RGB -> ``class_ids`` int32 ``[1, H, W]`` and
``probabilities`` float32 ``[1, H, W, K]``, normalisation inside. Height and
width are free (``-1`` in the input's shape signature; the reader resizes
the input to each image) unless a fixed size is asked for, as some
accelerator delegates need. The batch is 1.

Precisions (:data:`PRECISIONS`):

- ``float32``: the model as trained (a float32 copy of a mixed-precision one).
- ``float16``: float16 weights, computed in float32 on CPUs (half the file).
- ``int8``: dynamic-range quantisation: int8 weights, activations quantised
  on the fly (a quarter of the file).
- ``int8_full``: weights and activations int8, with activation ranges
  calibrated on a representative set of training images; operations without
  an int8 kernel stay in float32.

Reading goes through ``ai_edge_litert.interpreter`` (LiteRT's own package,
the successor of the interpreter in ``tf.lite``, which TensorFlow 2.21
deprecates).
"""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from fcn_tf.runtimes import common
from fcn_tf.runtimes.common import ArtifactRunner, artifact_file_name, require
from fcn_tf.signatures import SIGNATURE_IMAGES
from fcn_tf.utils.logs import CONVERTER_NOTICES, notices_dropped

PRECISIONS = ("float32", "float16", "int8", "int8_full")
SIGNATURE = SIGNATURE_IMAGES  # the file's one signature, named as the SavedModel's


def file_name(precision):
    """``model.tflite`` for float32, ``model_<precision>.tflite`` otherwise."""
    return artifact_file_name(".tflite", precision)


def check_precision(precision):
    common.check_precision("tflite_precision", precision, PRECISIONS)


def convert(model, from_rgb, precision="float32", size=None, representative=None):
    """LiteRT flatbuffer bytes of ``from_rgb`` (uint8 RGB -> outputs dict).

    Args:
        model: the float32 Keras model ``from_rgb`` calls (tracked so its
            weights are constants of the file).
        from_rgb: a function of uint8 ``[B, H, W, 3]`` images returning
            ``{"class_ids", "probabilities"}``.
        precision: one of :data:`PRECISIONS`.
        size: ``(height, width)`` to fix the input size, or ``None`` (free).
        representative: for ``int8_full``, an iterable of uint8
            ``[1, H, W, 3]`` arrays (training images) to calibrate on.
    """
    check_precision(precision)
    if precision == "int8_full" and representative is None:
        raise ValueError("representative: int8_full quantisation needs representative "
                         "images (e.g. from the training split); received none.")
    height, width = size if size else (None, None)
    # Through Keras' ExportArchive, as keras.Model.export(format="litert") does:
    # converting a plain tf.Module SavedModel gives a graph that reads
    # uninitialised resource variables (NaN outputs).
    with tempfile.TemporaryDirectory(prefix="fcn_tf-litert-") as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SIGNATURE, from_rgb, input_signature=[
            tf.TensorSpec([1, height, width, 3], tf.uint8, name="images")])
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if precision != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if precision == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if precision == "int8_full":
            samples = [np.asarray(image, np.uint8) for image in representative]
            converter.representative_dataset = lambda: ([sample] for sample in samples)
        with notices_dropped(CONVERTER_NOTICES):  # "Ignored output_format." ...
            return converter.convert()


def load(path, num_threads=None):
    """An :class:`~fcn_tf.runtimes.ArtifactRunner` reading ``path`` with ``ai-edge-litert``."""
    litert = require("litert", f"reading {path}")
    try:
        interpreter = litert.Interpreter(
            model_path=str(path), num_threads=num_threads or os.cpu_count())
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"model {path}: LiteRT cannot read this file ({error}).") from error
    signatures = interpreter.get_signature_list()
    if SIGNATURE not in signatures:
        raise ValueError(f"model {path}: a LiteRT file without the {SIGNATURE!r} signature "
                         f"(it has {sorted(signatures) or 'none'}); export it with "
                         "python -m fcn_tf.export --tflite.")
    runner = interpreter.get_signature_runner(SIGNATURE)
    detail = runner.get_input_details()["images"]
    shape = [int(v) for v in detail["shape_signature"]]
    free = shape[1] == -1 or shape[2] == -1

    def run(images):
        return {key: np.asarray(value) for key, value in runner(images=images).items()}

    return ArtifactRunner(str(path), "litert", run, free,
                          None if free else (shape[1], shape[2]), max_batch=1)
