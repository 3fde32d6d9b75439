"""The compact FPN model, its resnet_lite backbone and adaptive average pooling."""

import keras
import numpy as np
import pytest

import fcn_tf
from fcn_tf.backbones import backbone_layers, get_backbone
from fcn_tf.models.fpn import AdaptiveAveragePool


def _adaptive_pool_reference(x, size):
    """PyTorch's AdaptiveAvgPool2d rule, written out with loops."""
    _, h, w, _ = x.shape
    out = np.zeros((x.shape[0], size, size, x.shape[3]), np.float64)
    for i in range(size):
        r0, r1 = (i * h) // size, -((-(i + 1) * h) // size)
        for j in range(size):
            c0, c1 = (j * w) // size, -((-(j + 1) * w) // size)
            out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 6])
@pytest.mark.parametrize("hw", [(12, 15), (7, 5), (6, 6), (1, 4)])
def test_adaptive_average_pool_matches_the_bin_rule(size, hw):
    x = np.random.default_rng(0).normal(size=(2, *hw, 3)).astype("float32")
    got = np.asarray(AdaptiveAveragePool(size)(x))
    np.testing.assert_allclose(got, _adaptive_pool_reference(x, size), rtol=1e-5, atol=1e-6)


def test_resnet_lite_features_by_stride():
    inputs = keras.Input((64, 96, 3))
    features = get_backbone("resnet_lite")(inputs, widths=(8, 16, 24, 32), blocks=(1, 2, 1, 1))
    assert features.strides == {"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 32}
    assert features.channels == {"P1": 24, "P2": 8, "P3": 16, "P4": 24, "P5": 32}
    assert tuple(features["P5"].shape[1:3]) == (2, 3)


def test_resnet_lite_rejects_wrong_stage_count():
    with pytest.raises(ValueError, match=r"four positive entries.*widths=\[8, 16\]"):
        get_backbone("resnet_lite")(keras.Input((32, 32, 3)), widths=(8, 16))


def test_fpn_default_size_and_any_input_size():
    model = fcn_tf.build_model("fpn", 11)
    # 32-64-128-256 stages of two basic blocks, 64-channel decoder, 11 classes.
    assert model.count_params() == 3_209_267
    tiny = fcn_tf.build_model("fpn", 3, widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1),
                              decoder_filters=8)
    for hw in [(37, 53), (360, 480), (5, 9)]:
        assert np.asarray(tiny(np.zeros((1, *hw, 3), "float32"))).shape == (1, *hw, 3)


def test_fpn_backbone_layers_are_the_encoder():
    model = fcn_tf.build_model("fpn", 3, widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1),
                               decoder_filters=8)
    names = {layer.name for layer in backbone_layers(model, "resnet_lite")}
    assert "stem_conv1" in names and "stage4_block1_conv2_bn" in names
    assert not any(n.startswith(("fpn", "ppm", "head", "fuse")) for n in names)
    encoder_weights = sum(int(np.prod(w.shape)) for layer in backbone_layers(model, "resnet_lite")
                          for w in layer.weights)
    assert 0 < encoder_weights < model.count_params()


def test_fpn_rejects_other_backbones():
    with pytest.raises(ValueError, match="resnet_lite"):
        fcn_tf.build_model("fpn", 3, backbone="vgg16")
