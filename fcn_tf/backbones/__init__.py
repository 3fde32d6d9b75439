"""Backbones: encoders that hand their feature maps to heads by stride.

Every backbone is a function ``backbone(inputs, **options) -> Features``; the
heads ask for the levels they need (FCN-8s ``P3``-``P5``, U-Net ``P0``-``P4``,
DeepLabV3+ ``P2`` and ``P5``).
"""

import dataclasses

import keras

from fcn_tf.backbones.features import DilationTracker, Features
from fcn_tf.backbones.mobilenet_v2 import mobilenet_v2
from fcn_tf.backbones.resnet_lite import resnet_lite
from fcn_tf.backbones.unet_encoder import unet_encoder
from fcn_tf.backbones.vgg import vgg16, vgg19
from fcn_tf.backbones.xception import xception
from fcn_tf.utils.names import unknown_name_message


@dataclasses.dataclass(frozen=True)
class ImagenetFile:
    """One ``keras.applications`` ImageNet weights file.

    ``url_path`` is relative to the download base
    (:data:`fcn_tf.weights.imagenet.URL_BASE`); ``hash`` is the digest Keras
    itself checks (``hash_algorithm`` ``"md5"``), ``None`` where Keras has none.
    """

    name: str
    url_path: str
    hash: object
    hash_algorithm: object
    source: str


def _keras_file(folder, name, md5, source):
    return ImagenetFile(name, f"{folder}/{name}", md5, "md5" if md5 else None, source)


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A backbone: how to build it and what its pretrained weights expect.

    Attributes:
        build: ``build(inputs, **options) -> Features``.
        output_layer: name of its last layer (its ancestors are the backbone's
            layers, e.g. to freeze them), or a tuple of layer-name prefixes
            where the last layer's name depends on the options.
        preprocessing: the :meth:`Preprocessing.preset` its pretrained
            weights were trained with.
        imagenet: ``{"encoder": ImagenetFile, "classifier": ImagenetFile}``:
            the ``keras.applications`` files (``classifier`` also holds
            ``fc1``/``fc2``, which FCN takes as ``fc6``/``fc7``); empty when
            there are none.
    """

    build: object
    output_layer: object
    preprocessing: str
    imagenet: dict


_APPS = "keras/src/applications/{}.py (Keras 3.15)"


def _vgg_row(build, variant, notop_md5, md5):
    """VGG: the encoder file, and the file with the classifier (fc1/fc2 -> fc6/fc7)."""
    stem = f"{variant}_weights_tf_dim_ordering_tf_kernels"
    source = _APPS.format(variant)
    return Backbone(build, "pool5", "vgg", {
        "encoder": _keras_file(variant, f"{stem}_notop.h5", notop_md5,
                               source + " WEIGHTS_PATH_NO_TOP"),
        "classifier": _keras_file(variant, f"{stem}.h5", md5, source + " WEIGHTS_PATH"),
    })


# One row per backbone. File names, URLs and MD5s are those keras.applications
# itself downloads and checks (the source named in each row).
BACKBONE_TABLE = {
    "mobilenet_v2": Backbone(mobilenet_v2, "block_16_project_BN", "inception", {
        "encoder": _keras_file(
            "mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            None, _APPS.format("mobilenet_v2") + ", alpha 1.0, rows 224, no hash published"),
    }),
    "resnet_lite": Backbone(resnet_lite, ("stem_", "stage"), "inception", {}),
    "unet_encoder": Backbone(unet_encoder, ("enc",), "unit", {}),
    "vgg16": _vgg_row(vgg16, "vgg16", notop_md5="6d6bbae143d832006294945121d1f1fc",
                      md5="64373286793e3c8b2b4e3219cbf3544b"),
    "vgg19": _vgg_row(vgg19, "vgg19", notop_md5="253f8cb515780f3b799900260a226db6",
                      md5="cbe5617147190e668d6c5d5026f83318"),
    "xception": Backbone(xception, "block14_sepconv2_act", "inception", {
        "encoder": _keras_file("xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                               "b0042744bf5b25fce3cb969f33bebb97",
                               _APPS.format("xception") + " WEIGHTS_PATH_NO_TOP"),
    }),
}

# Views of the table, by what callers ask for.
BACKBONES = {name: row.build for name, row in BACKBONE_TABLE.items()}
BACKBONE_PREPROCESSING = {name: row.preprocessing for name, row in BACKBONE_TABLE.items()}
IMAGENET_FILES = {name: row.imagenet for name, row in BACKBONE_TABLE.items() if row.imagenet}


def get_backbone(name):
    """Return the backbone function registered as ``name``."""
    if name not in BACKBONES:
        raise ValueError(unknown_name_message("backbone", name, BACKBONES))
    return BACKBONES[name]


__all__ = ["BACKBONES", "BACKBONE_PREPROCESSING", "BACKBONE_TABLE", "Backbone", "DilationTracker",
           "Features", "IMAGENET_FILES", "ImagenetFile", "backbone_layers", "get_backbone"]


def backbone_layers(model, backbone):
    """The layers of ``model`` that belong to ``backbone`` (to freeze them).

    Found as the layers of the sub-graph from the model input to the
    backbone's last layer, or by the row's layer-name prefixes (U-Net
    encoder: ``enc*``; resnet_lite: ``stem_*``, ``stage*``).
    """
    if backbone not in BACKBONE_TABLE:
        raise ValueError(unknown_name_message("backbone", backbone, BACKBONE_TABLE))
    last = BACKBONE_TABLE[backbone].output_layer
    if isinstance(last, tuple):
        return [layer for layer in model.layers if layer.name.startswith(last) and layer.weights]
    sub = keras.Model(model.inputs, model.get_layer(last).output)
    return [layer for layer in sub.layers if layer.weights]
