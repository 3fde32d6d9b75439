"""The dual-resolution model ``ddrnet_lite``: branch strides, bilateral fusion, names."""

import keras
import numpy as np
import pytest

import fcn_tf
from fcn_tf.backbones import backbone_layers
from tests.model_cases import TINY_OPTIONS

TINY = TINY_OPTIONS["ddrnet_lite"]


def _source_layers(model, layer_name):
    """Names of the layers whose outputs feed ``layer_name``."""
    node = model.get_layer(layer_name)._inbound_nodes[0]
    return sorted(t._keras_history.operation.name for t in node.input_tensors)


def test_default_size_and_any_input_size():
    model = fcn_tf.build_model("ddrnet_lite", 11)
    # 32-64-128-256 trunk and low branch, two 64-channel high-branch stages,
    # pyramid pooling to 64 channels, 64-channel head, 11 classes.
    assert model.count_params() == 3_812_147
    tiny = fcn_tf.build_model("ddrnet_lite", 3, **TINY)
    for hw in [(37, 53), (360, 480), (5, 9)]:
        assert np.asarray(tiny(np.zeros((1, *hw, 3), "float32"))).shape == (1, *hw, 3)


def test_high_branch_stays_at_stride_8_and_low_branch_reaches_32():
    model = fcn_tf.build_model("ddrnet_lite", 3, input_size=(64, 96), **TINY)
    strides = {
        "stage2_block1_relu": 8, "high3_block1_relu": 8, "fuse4_high_relu": 8,
        "stage3_block1_relu": 16, "fuse3_low_relu": 16,
        "stage4_block1_relu": 32, "fuse4_low_relu": 32, "head": 8,
    }
    for name, stride in strides.items():
        assert tuple(model.get_layer(name).output.shape[1:3]) == (64 // stride, 96 // stride), name


def test_bilateral_fusion_feeds_each_branch_the_other():
    model = fcn_tf.build_model("ddrnet_lite", 3, **TINY)
    for stage, down in ((3, "fuse3_down1_bn"), (4, "fuse4_down2_bn")):
        assert _source_layers(model, f"fuse{stage}_low") == sorted(
            [f"stage{stage}_block1_relu", down])
        assert _source_layers(model, f"fuse{stage}_high") == sorted(
            [f"high{stage}_block1_relu", f"fuse{stage}_up_resize"])
    # Stride 8 -> 32 takes two stride-2 convolutions, the first with a ReLU.
    assert _source_layers(model, "fuse4_down2") == ["fuse4_down1_relu"]
    # The next stage of each branch reads the fused maps.
    assert _source_layers(model, "stage4_block1_conv1") == ["fuse3_low_relu"]
    assert _source_layers(model, "high4_block1_conv1") == ["fuse3_high_relu"]
    assert _source_layers(model, "context_add") == ["fuse4_high_relu", "ppm_up"]


def test_the_logits_depend_on_both_branches():
    """Zeroing the context branch or the high branch's own path changes the logits."""
    keras.utils.set_random_seed(0)
    model = fcn_tf.build_model("ddrnet_lite", 3, **TINY)
    x = np.random.default_rng(0).normal(size=(1, 32, 48, 3)).astype("float32")
    reference = np.asarray(model(x))
    for layer_name in ("ppm_project", "high4_block1_conv2"):
        layer = model.get_layer(layer_name)
        saved = layer.get_weights()
        layer.set_weights([np.zeros_like(w) for w in saved])
        assert np.abs(np.asarray(model(x)) - reference).max() > 1e-4, layer_name
        layer.set_weights(saved)


def test_backbone_layers_are_the_trunk_and_low_branch():
    model = fcn_tf.build_model("ddrnet_lite", 3, **TINY)
    names = {layer.name for layer in backbone_layers(model, "resnet_lite")}
    assert {"stem_conv1", "stage2_block1_conv1", "stage4_block1_conv2_bn"} <= names
    assert not any(n.startswith(("high", "fuse", "ppm", "head", "context")) for n in names)


@pytest.mark.parametrize("options,message", [
    ({"backbone": "vgg16"}, "Unknown backbone for 'ddrnet_lite' 'vgg16'. Available: resnet_lite"),
    ({"widths": (8, 16)}, r"ddrnet_lite: widths and blocks need four positive entries"),
    ({"blocks": (1, 0, 1, 1)}, r"received widths=\[32, 64, 128, 256\], blocks=\[1, 0, 1, 1\]"),
    ({"head_filters": 0}, "ddrnet_lite: head_filters must be a positive integer, received 0"),
    ({"head_filters": "64"}, "head_filters must be a positive integer, received '64'"),
])
def test_bad_options_name_the_model(options, message):
    with pytest.raises(ValueError, match=message):
        fcn_tf.build_model("ddrnet_lite", 3, **options)
