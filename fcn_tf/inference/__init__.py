"""Using a trained model: load it, turn images into logits, write what it predicts.

- :mod:`fcn_tf.inference.loading`: :func:`load_for_inference` opens a ``.keras``
  file, a run folder, a SavedModel export or an exported ``.tflite`` /
  ``.onnx`` file as an :class:`InferenceModel` that takes raw pixels.
- :mod:`fcn_tf.inference.options`: :class:`InferenceOptions` (test-time
  scales and flip, sliding windows).
- :mod:`fcn_tf.inference.logits`: :func:`predict_logits`, the one way a batch
  becomes logits, over :func:`tta_logits` and :func:`sliding_window_bands`.
- :mod:`fcn_tf.inference.images`: the image files of a folder, read upright
  (EXIF orientation), in the model's channels.
- :mod:`fcn_tf.inference.pictures`: class ids as a palette PNG, overlays.
- :mod:`fcn_tf.inference.writing`: where predictions go and what they may
  replace (the manifest of files predict made).
- :mod:`fcn_tf.inference.segment`: :func:`predict_paths`, image files in,
  pictures out (what ``python -m fcn_tf.predict`` runs).

This package sits above :mod:`fcn_tf.runs` (run folders) and below
evaluation, the fidelity check, export and the command lines; it never
imports training.

Example:
    >>> model = load_for_inference("runs/default")                        # doctest: +SKIP
    >>> logits = predict_logits(model.logits, pixels, InferenceOptions(flip=True))  # doctest: +SKIP
"""

from fcn_tf.inference.images import IMAGE_SUFFIXES, list_inputs, read_rgb, to_model_channels
from fcn_tf.inference.loading import (
    InferenceModel,
    load_exported_file,
    load_for_inference,
    load_keras,
    load_saved_model,
)
from fcn_tf.inference.logits import (
    predict_logits,
    sliding_window_bands,
    sliding_window_logits,
    tta_logits,
    window_starts,
    window_weights,
)
from fcn_tf.inference.options import WEIGHTINGS, InferenceOptions
from fcn_tf.inference.pictures import save_class_png, save_overlay
from fcn_tf.inference.segment import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_WINDOW,
    options_for,
    predict_paths,
    readable_plan,
    segment_image,
)
from fcn_tf.inference.writing import (
    MANIFEST,
    Manifest,
    check_outputs,
    made_by_predict,
    output_names,
    plan_outputs,
    read_manifest,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_WINDOW",
    "IMAGE_SUFFIXES",
    "InferenceModel",
    "InferenceOptions",
    "MANIFEST",
    "Manifest",
    "WEIGHTINGS",
    "check_outputs",
    "list_inputs",
    "load_exported_file",
    "load_for_inference",
    "load_keras",
    "load_saved_model",
    "made_by_predict",
    "options_for",
    "output_names",
    "plan_outputs",
    "predict_logits",
    "predict_paths",
    "read_manifest",
    "read_rgb",
    "readable_plan",
    "save_class_png",
    "save_overlay",
    "segment_image",
    "sliding_window_bands",
    "sliding_window_logits",
    "tta_logits",
    "to_model_channels",
    "window_starts",
    "window_weights",
]
