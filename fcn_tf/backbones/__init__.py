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


_CLASSIFIER = "ImageNet classifier (1000 classes): not used for segmentation"


@dataclasses.dataclass(frozen=True)
class ImagenetWeights:
    """A backbone's ``keras.applications`` ImageNet weights: the files and how they map.

    Everything the weights code (:mod:`fcn_tf.weights.keras_h5`,
    :mod:`fcn_tf.weights.imagenet`) knows of one backbone's files.

    Attributes:
        files: ``{"encoder": ImagenetFile, "classifier": ImagenetFile}``
            (``classifier`` also holds ``fc1``/``fc2``, which FCN takes as
            ``fc6``/``fc7``).
        application: the ``keras.applications`` constructor (``"VGG16"``) and
            its keyword arguments beside ``weights=None, include_top=False``:
            built only to learn the layer order of a Keras 3 file.
        file_layers: layer names a (legacy) file of this network holds; a
            file is this network's when it holds them all, the row with the
            most names winning (VGG19's ``block5_conv4`` beside VGG16's
            ``block5_conv3``).
        keras3_counts: ``{layer class: count}`` of the network's weighted
            layers (the top's Dense layers aside): a Keras 3 ``.weights.h5``
            holding exactly these is this network's.
        model_layers: layer names every model on this backbone has, told as
            ``file_layers`` are.
        layers: a regular expression of the model's layers the file covers.
        first_layer: the model's layer that sees the image (its input
            channels are flipped for ``channel_order`` ``"bgr"``).
        channel_order: ``"rgb"``, or ``"bgr"`` for Caffe's VGG weights.
        mapping: how the file's layers map onto the model's:
            ``"by_name"``, ``"vgg"`` or ``"xception"``
            (:data:`fcn_tf.weights.keras_h5.MAPPINGS`).
        top_dense: the Dense layers a Keras 3 file saved with the top holds.
        unused: ``{file layer: reason}`` of the file's layers left out on
            purpose (by default the ImageNet classifier, ``predictions``).
    """

    files: dict
    application: tuple
    file_layers: tuple
    keras3_counts: dict
    model_layers: tuple
    layers: str
    first_layer: str
    channel_order: str = "rgb"
    mapping: str = "by_name"
    top_dense: tuple = ("predictions",)
    unused: dict = dataclasses.field(default_factory=lambda: {"predictions": _CLASSIFIER})


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
        imagenet: its :class:`ImagenetWeights`, ``None`` when there are none.
    """

    build: object
    output_layer: object
    preprocessing: str
    imagenet: object = None


_APPS = "keras/src/applications/{}.py (Keras 3.15)"


def _vgg_row(build, variant, notop_md5, md5, blocks):
    """VGG: the encoder file, and the file with the classifier (fc1/fc2 -> fc6/fc7).

    ``blocks``: the convolutions of each of the five blocks (VGG19 has four
    in blocks 3-5).
    """
    stem = f"{variant}_weights_tf_dim_ordering_tf_kernels"
    source = _APPS.format(variant)
    last = f"conv5_{blocks[-1]}"
    return Backbone(build, "pool5", "vgg", ImagenetWeights(
        files={
            "encoder": _keras_file(variant, f"{stem}_notop.h5", notop_md5,
                                   source + " WEIGHTS_PATH_NO_TOP"),
            "classifier": _keras_file(variant, f"{stem}.h5", md5, source + " WEIGHTS_PATH"),
        },
        application=(variant.upper(), {}),
        file_layers=tuple(f"block5_conv{i}" for i in range(3, blocks[-1] + 1)),
        keras3_counts={"Conv2D": sum(blocks)},
        model_layers=tuple(f"conv5_{i}" for i in range(3, blocks[-1] + 1)),
        layers=r"^conv\d+_\d+$", first_layer="conv1_1", channel_order="bgr", mapping="vgg",
        top_dense=("fc1", "fc2", "predictions"),
    ))


# One row per backbone. File names, URLs and MD5s are those keras.applications
# itself downloads and checks (the source named in each row); the layer
# counts are those of the keras.applications network (tests/test_backbones.py
# builds each and checks its row).
BACKBONE_TABLE = {
    "mobilenet_v2": Backbone(mobilenet_v2, "block_16_project_BN", "inception", ImagenetWeights(
        files={"encoder": _keras_file(
            "mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            None, _APPS.format("mobilenet_v2") + ", alpha 1.0, rows 224, no hash published")},
        application=("MobileNetV2", {"input_shape": (224, 224, 3)}),
        file_layers=("Conv1", "block_16_project"),
        keras3_counts={"Conv2D": 35, "BatchNormalization": 52, "DepthwiseConv2D": 17},
        model_layers=("block_16_project",),
        layers=r"^(Conv1|bn_Conv1|expanded_conv_\w+|block_\d+_\w+)$", first_layer="Conv1",
        unused={
            "Conv_1": "the final 1x1 convolution to 1280 channels is not part of DeepLab's "
                      "encoder",
            "Conv_1_bn": "the BatchNorm of Conv_1, not part of DeepLab's encoder",
            "predictions": _CLASSIFIER,
        },
    )),
    "resnet_lite": Backbone(resnet_lite, ("stem_", "stage"), "inception"),
    "unet_encoder": Backbone(unet_encoder, ("enc",), "unit"),
    "vgg16": _vgg_row(vgg16, "vgg16", notop_md5="6d6bbae143d832006294945121d1f1fc",
                      md5="64373286793e3c8b2b4e3219cbf3544b", blocks=(2, 2, 3, 3, 3)),
    "vgg19": _vgg_row(vgg19, "vgg19", notop_md5="253f8cb515780f3b799900260a226db6",
                      md5="cbe5617147190e668d6c5d5026f83318", blocks=(2, 2, 4, 4, 4)),
    "xception": Backbone(xception, "block14_sepconv2_act", "inception", ImagenetWeights(
        files={"encoder": _keras_file(
            "xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "b0042744bf5b25fce3cb969f33bebb97", _APPS.format("xception") + " WEIGHTS_PATH_NO_TOP")},
        application=("Xception", {}),
        file_layers=("block14_sepconv2",),
        keras3_counts={"Conv2D": 6, "BatchNormalization": 40, "SeparableConv2D": 34},
        model_layers=("block14_sepconv2",),
        layers=r"^block\d+_\w+$", first_layer="block1_conv1", mapping="xception",
    )),
}

# Views of the table, by what callers ask for.
BACKBONES = {name: row.build for name, row in BACKBONE_TABLE.items()}
BACKBONE_PREPROCESSING = {name: row.preprocessing for name, row in BACKBONE_TABLE.items()}
IMAGENET = {name: row.imagenet for name, row in BACKBONE_TABLE.items() if row.imagenet}
IMAGENET_FILES = {name: weights.files for name, weights in IMAGENET.items()}


def told_by_layers(names, markers):
    """The key of ``markers`` (``{key: layer names}``) whose names all are in ``names``.

    When several match, the one with the most names (VGG19's ``conv5_4``
    beside VGG16's ``conv5_3``); ``None`` when none does.
    """
    names = set(names)
    found = [key for key, needed in markers.items() if names.issuperset(needed)]
    return max(found, key=lambda key: len(markers[key]), default=None)


def get_backbone(name):
    """Return the backbone function registered as ``name``."""
    if name not in BACKBONES:
        raise ValueError(unknown_name_message("backbone", name, BACKBONES))
    return BACKBONES[name]


__all__ = ["BACKBONES", "BACKBONE_PREPROCESSING", "BACKBONE_TABLE", "Backbone", "DilationTracker",
           "Features", "IMAGENET", "IMAGENET_FILES", "ImagenetFile", "ImagenetWeights",
           "backbone_layers", "get_backbone", "told_by_layers"]


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
