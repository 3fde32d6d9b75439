"""What ``metadata.json`` of an export says: the model, its classes, its inputs and its files.

:func:`export_metadata` gives the document for a model about to be exported;
the exporter adds the compute precision, whether BatchNorm was folded and the
``artifacts`` (each LiteRT / ONNX file) before writing it. Readers of an
export take it through :func:`fcn_tf.inference.loading.read_export_metadata`.

Example:
    >>> export_metadata(model, preprocessing, "runs/default/best.keras", config)  # doctest: +SKIP
"""

import os

from fcn_tf.runs.folder import backbone_of_model, class_info, model_classes
from fcn_tf.signatures import SIGNATURE_BYTES, SIGNATURE_IMAGES

METADATA_VERSION = 2


def export_metadata(model, preprocessing, checkpoint, config=None, config_dict=None,
                    normalization_source=None):
    """The metadata.json contents: classes, colours, channels, normalisation, config.

    Args:
        model: the Keras model being exported.
        preprocessing: its :class:`~fcn_tf.preprocessing.Preprocessing`.
        checkpoint: the ``.keras`` file it came from (recorded as the source).
        config: the run :class:`~fcn_tf.config.run_config.Config`, or ``None``
            (default class names and colours).
        config_dict: the raw config document; default ``config.to_dict()``.
        normalization_source: where the normalisation came from (a sentence).
    """
    info = class_info(model_classes(model), config)
    channels = int(model.input_shape[-1])
    if config_dict is None and config is not None:
        config_dict = config.to_dict()
    return {
        "format_version": METADATA_VERSION,
        "model_name": config.model.name if config else model.name,
        "backbone": (config.model.backbone if config and config.model.backbone
                     else backbone_of_model(model)),
        "keras_model_name": model.name,
        "num_classes": info["num_classes"],
        "logit_channels": int(model.output_shape[-1]),
        "class_names": info["class_names"],
        "colors": info["colors"],
        "ignore_label": info["ignore_label"],
        "image_channels": channels,
        "normalization": preprocessing.to_dict(),
        "normalization_source": normalization_source or "the exporting program",
        "signatures": _signatures(info["num_classes"]),
        "grayscale_input": ("3-channel RGB converted to luma inside the graph"
                            if channels == 1 else None),
        "artifacts": {},
        "source_checkpoint": os.path.abspath(checkpoint),
        "training_config": config_dict,
    }


def _signatures(num_classes):
    """What each signature of the SavedModel takes and gives."""
    return {
        SIGNATURE_IMAGES: {"inputs": {"images": "uint8 [batch, height, width, 3] RGB"},
                           "outputs": {"class_ids": "int32 [batch, height, width]",
                                       "probabilities": "float32 [batch, height, width, "
                                                        f"{num_classes}]"}},
        SIGNATURE_BYTES: {"inputs": {"image_bytes": "string [batch] encoded JPEG/PNG, "
                                                    "one size per request"},
                          "outputs": f"as {SIGNATURE_IMAGES}"},
    }
