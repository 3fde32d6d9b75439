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


__all__ = ["BACKBONES", "DilationTracker", "Features", "get_backbone"]
