"""Exporting a trained model: the serving graph, LiteRT / ONNX files, metadata, the folder.

- :mod:`fcn_tf.exporting.graph`: the uint8 serving graph (normalisation
  inside) and :func:`export_saved_model`.
- :mod:`fcn_tf.exporting.artifacts`: the LiteRT and ONNX files
  (:func:`write_artifacts`), :func:`float32_copy`, :func:`representative_images`.
- :mod:`fcn_tf.exporting.metadata`: :func:`export_metadata`, the contents of
  ``metadata.json``.
- :mod:`fcn_tf.exporting.folders`: where an export is written and what it
  may replace (:func:`check_out`, :func:`remove_stale_temporaries`).
- :mod:`fcn_tf.exporting.exporter`: :func:`export_model` (an in-memory Keras
  model) and :func:`export_checkpoint` (a ``.keras`` file or run folder).

``python -m fcn_tf.export`` is the command line over these. This package
sits above inference and the fidelity check and below training (the
trainer exports at the end of a run); it never imports training.

Example:
    >>> export_checkpoint("runs/default", "models/seg/1", tflite=True)   # doctest: +SKIP
"""

from fcn_tf.exporting.artifacts import (
    ONNX_FILE,
    ONNX_PRECISIONS,
    REPRESENTATIVE_COUNT,
    TFLITE_FILE,
    TFLITE_PRECISIONS,
    float32_copy,
    representative_images,
    write_artifacts,
)
from fcn_tf.exporting.exporter import export_checkpoint, export_model
from fcn_tf.exporting.folders import (
    check_out,
    check_replaceable,
    remove_stale_temporaries,
    written_in_place,
)
from fcn_tf.exporting.graph import export_saved_model, serving_module
from fcn_tf.exporting.metadata import METADATA_VERSION, export_metadata

__all__ = [
    "METADATA_VERSION",
    "ONNX_FILE",
    "ONNX_PRECISIONS",
    "REPRESENTATIVE_COUNT",
    "TFLITE_FILE",
    "TFLITE_PRECISIONS",
    "check_out",
    "check_replaceable",
    "export_checkpoint",
    "export_metadata",
    "export_model",
    "export_saved_model",
    "float32_copy",
    "remove_stale_temporaries",
    "representative_images",
    "serving_module",
    "write_artifacts",
    "written_in_place",
]
