"""Exported models outside TensorFlow: LiteRT (``.tflite``) and ONNX files.

Each runtime has one module that converts a serving function into its file
format and reads such a file back through the runtime people deploy with:
:mod:`fcn_tf.runtimes.litert` (``ai-edge-litert``) and
:mod:`fcn_tf.runtimes.onnx` (``tf2onnx`` to write, ``onnxruntime`` to read).
Both runtimes are optional extras (``pip install -e ".[deploy]"``); reading
a file never needs the interpreter inside TensorFlow (``tf.lite``), which
TensorFlow 2.21 deprecates.

Every reader gives an :class:`ArtifactRunner`: uint8 RGB images
``[B, H, W, 3]`` in, ``class_ids`` int32 ``[B, H, W]`` and
``probabilities`` float32 ``[B, H, W, K]`` out, as the SavedModel's
``serving_default`` signature.
"""

from fcn_tf.runtimes.common import (
    ARTIFACT_SUFFIXES,
    ArtifactRunner,
    RuntimeMissingError,
    artifact_runtime,
    load_artifact,
)

__all__ = [
    "ARTIFACT_SUFFIXES",
    "ArtifactRunner",
    "RuntimeMissingError",
    "artifact_runtime",
    "load_artifact",
]
