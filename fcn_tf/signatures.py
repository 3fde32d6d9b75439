"""The names of an exported model's signatures, and of the two the server adds.

An export (``python -m fcn_tf.export``) has two signatures: ``serving_default``
takes uint8 RGB pixels, ``serving_bytes`` encoded JPEG/PNG/... images. The
server (``python -m fcn_tf.serve``) adds ``serving_png`` and
``serving_bytes_png``, the same inputs answered with a palette PNG of class
ids. Exporting, serving and the load tool name them from here; this module
imports nothing, so the load tool runs without TensorFlow.
"""

SIGNATURE_IMAGES = "serving_default"
SIGNATURE_BYTES = "serving_bytes"
SIGNATURE_PNG = "serving_png"
SIGNATURE_BYTES_PNG = "serving_bytes_png"
# Every signature a server answers, the export's and its own.
SERVED_SIGNATURES = (SIGNATURE_BYTES_PNG, SIGNATURE_BYTES, SIGNATURE_PNG, SIGNATURE_IMAGES)

__all__ = ["SERVED_SIGNATURES", "SIGNATURE_BYTES", "SIGNATURE_BYTES_PNG", "SIGNATURE_IMAGES",
           "SIGNATURE_PNG"]
