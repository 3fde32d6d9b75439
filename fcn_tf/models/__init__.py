"""Segmentation networks and their registry."""

from fcn_tf.models.registry import (
    MODELS,
    build_model,
    default_preprocessing,
    get_model_spec,
    list_backbones,
    list_models,
    register_model,
)

__all__ = [
    "MODELS",
    "build_model",
    "default_preprocessing",
    "get_model_spec",
    "list_backbones",
    "list_models",
    "register_model",
]
