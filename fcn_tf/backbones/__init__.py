"""Backbones: encoders that hand their feature maps to heads by stride.

Every backbone is a function ``backbone(inputs, **options) -> Features``; the
heads ask for the levels they need (FCN-8s ``P3``-``P5``, U-Net ``P0``-``P4``,
DeepLabV3+ ``P2`` and ``P5``).
"""

from fcn_tf.backbones.features import DilationTracker, Features
from fcn_tf.backbones.mobilenet_v2 import mobilenet_v2
from fcn_tf.backbones.unet_encoder import unet_encoder
from fcn_tf.backbones.vgg import vgg16, vgg19
from fcn_tf.backbones.xception import xception
from fcn_tf.utils.names import unknown_name_message

BACKBONES = {
    "mobilenet_v2": mobilenet_v2,
    "unet_encoder": unet_encoder,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "xception": xception,
}


def get_backbone(name):
    """Return the backbone function registered as ``name``."""
    if name not in BACKBONES:
        raise ValueError(unknown_name_message("backbone", name, BACKBONES))
    return BACKBONES[name]


__all__ = ["BACKBONES", "DilationTracker", "Features", "backbone_layers", "get_backbone"]


# The last layer of each backbone: its ancestors are the backbone's layers.
BACKBONE_OUTPUT_LAYERS = {
    "vgg16": "pool5",
    "vgg19": "pool5",
    "mobilenet_v2": "block_16_project_BN",
    "xception": "block14_sepconv2_act",
}


def backbone_layers(model, backbone):
    """The layers of ``model`` that belong to ``backbone`` (to freeze them).

    Found as the layers of the sub-graph from the model input to the
    backbone's last layer; for the U-Net encoder, the ``enc*`` layers.
    """
    import keras

    if backbone == "unet_encoder":
        return [layer for layer in model.layers if layer.name.startswith("enc")]
    if backbone not in BACKBONE_OUTPUT_LAYERS:
        raise ValueError(unknown_name_message("backbone", backbone, BACKBONE_OUTPUT_LAYERS))
    sub = keras.Model(model.inputs, model.get_layer(BACKBONE_OUTPUT_LAYERS[backbone]).output)
    return [layer for layer in sub.layers if layer.weights]
