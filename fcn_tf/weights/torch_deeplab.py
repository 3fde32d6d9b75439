"""State dicts of bubbliiiing/deeplabv3-plus-pytorch's DeepLabV3+ MobileNetV2.

https://github.com/bubbliiiing/deeplabv3-plus-pytorch (``nets/deeplabv3_plus.py``,
``nets/mobilenetv2.py``) is a widely trained PyTorch DeepLabV3+; its released
VOC weights are a state dict of ``DeepLab(num_classes=21, backbone="mobilenet")``.
They load into ``build_model("deeplabv3plus", 21, variant="bubbliiiing")``
(the same architecture; see :mod:`fcn_tf.models.deeplabv3plus`) by this
table (:func:`rows`; conversions in :mod:`.torch_layout`):

====================================  =========================================
PyTorch                               Keras
====================================  =========================================
``backbone.features.0.0`` / ``.0.1``  ``Conv1`` / ``bn_Conv1``
``backbone.features.1.conv.0/1/3/4``  ``expanded_conv_depthwise(_BN)``,
                                      ``expanded_conv_project(_BN)``
``backbone.features.i.conv.0/1``      ``block_{i-1}_expand(_BN)``
``backbone.features.i.conv.3/4``      ``block_{i-1}_depthwise(_BN)`` (depthwise)
``backbone.features.i.conv.6/7``      ``block_{i-1}_project(_BN)``
``aspp.branch1.0/1``                  ``aspp_1x1(_bn)``
``aspp.branch2/3/4.0/1``              ``aspp_rate6/12/18(_bn)`` (12/24/36 at OS 8)
``aspp.branch5_conv`` / ``_bn``       ``aspp_pool(_bn)``
``aspp.conv_cat.0/1``                 ``aspp_project(_bn)``
``shortcut_conv.0/1``                 ``decoder_low_level(_bn)``
``cat_conv.0/1``, ``cat_conv.4/5``    ``decoder_conv1(_bn)``, ``decoder_conv2(_bn)``
``cls_conv``                          ``classifier``
====================================  =========================================

The ASPP, shortcut and decoder convolutions' biases are folded into their
BatchNorm's moving mean. Its images are RGB scaled to [0, 1]
(``utils/utils.py: preprocess_input``: ``image / 255``).
"""

import re

from fcn_tf.weights.torch_layout import Conv, ConvBN

FEATURE = re.compile(r"backbone\.features\.(\d+)\.")
SIGNATURE = "aspp.conv_cat.0.weight"
HINT = (
    "The file must be a state dict of bubbliiiing/deeplabv3-plus-pytorch's "
    "DeepLab(backbone='mobilenet') and the model fcn_tf.from_pytorch(path, "
    "'deeplabv3plus', num_classes) (variant='bubbliiiing', output_stride as trained, "
    "num_classes as in cls_conv.weight)."
)


def block_rows(index):
    """Rows of ``backbone.features.<index>`` (an inverted residual, ``index >= 1``)."""
    block = index - 1
    source = f"backbone.features.{index}.conv"
    prefix = f"block_{block}_" if block else "expanded_conv_"
    steps = [] if block == 0 else [("expand", False)]
    steps += [("depthwise", True), ("project", False)]
    return [
        ConvBN(
            f"{source}.{3 * step}", f"{source}.{3 * step + 1}",
            prefix + name, prefix + name + "_BN", depthwise=depthwise,
        )
        for step, (name, depthwise) in enumerate(steps)
    ]


def rows(state, rates=(6, 12, 18)):
    """The mapping rows for ``state``: the backbone's blocks as present, then the head.

    Args:
        state: the state dict (its ``backbone.features.<i>`` say how many blocks).
        rates: the model's ASPP rates, for the ``aspp_rate<r>`` names.
    """
    blocks = sorted({int(m.group(1)) for key in state if (m := FEATURE.match(key))})
    table = [ConvBN("backbone.features.0.0", "backbone.features.0.1", "Conv1", "bn_Conv1")]
    for index in blocks:
        if index:
            table += block_rows(index)
    table.append(ConvBN("aspp.branch1.0", "aspp.branch1.1", "aspp_1x1", "aspp_1x1_bn"))
    for branch, rate in enumerate(rates, start=2):
        table.append(ConvBN(
            f"aspp.branch{branch}.0", f"aspp.branch{branch}.1",
            f"aspp_rate{rate}", f"aspp_rate{rate}_bn",
        ))
    table += [
        ConvBN("aspp.branch5_conv", "aspp.branch5_bn", "aspp_pool", "aspp_pool_bn"),
        ConvBN("aspp.conv_cat.0", "aspp.conv_cat.1", "aspp_project", "aspp_project_bn"),
        ConvBN("shortcut_conv.0", "shortcut_conv.1", "decoder_low_level", "decoder_low_level_bn"),
        ConvBN("cat_conv.0", "cat_conv.1", "decoder_conv1", "decoder_conv1_bn"),
        ConvBN("cat_conv.4", "cat_conv.5", "decoder_conv2", "decoder_conv2_bn"),
        Conv("cls_conv", "classifier"),
    ]
    return table


def model_rates(layer_names):
    """The ASPP rates of a model from its ``aspp_rate<r>`` layer names (sorted)."""
    found = sorted(
        int(m.group(1)) for name in layer_names if (m := re.fullmatch(r"aspp_rate(\d+)", name))
    )
    return tuple(found) or (6, 12, 18)


def model_problem(model):
    """Why ``model`` is not the ``variant="bubbliiiing"`` DeepLabV3+, or ``None``."""
    names = {layer.name for layer in model.layers}
    if "aspp_project" not in names:
        return f"the model '{model.name}' is not a DeepLabV3+"
    resize = model.get_layer("upsample_to_input")
    if not getattr(resize, "align_corners", False) or "Conv1_pad" not in names:
        return (
            f"the model '{model.name}' is DeepLabV3+ variant='default', whose padding, "
            "BatchNorm epsilon and resizes differ from that implementation's (the weights "
            "would load but give other logits); build it with variant='bubbliiiing'"
        )
    return None
