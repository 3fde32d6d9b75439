"""The compact FPN model, its resnet_lite backbone and adaptive average pooling."""

import keras
import numpy as np
import pytest

import fcn_tf
from fcn_tf.backbones import backbone_layers, get_backbone
from fcn_tf.layers import ImageStandardize
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


def test_image_standardize_gives_each_image_and_channel_zero_mean_unit_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 9, 3)) * [1.0, 5.0, 0.2] + [3.0, -2.0, 40.0]
    got = np.asarray(ImageStandardize(epsilon=0.0)(x.astype("float32")), np.float64)
    np.testing.assert_allclose(got.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(got.std(axis=(1, 2)), 1.0, atol=1e-4)
    expected = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # A flat image is mapped to zeros (epsilon keeps the division finite).
    assert np.all(np.asarray(ImageStandardize()(np.full((1, 4, 4, 3), 7.0, "float32"))) == 0)


def test_fpn_standardize_input_ignores_each_images_exposure_and_white_balance(tmp_path):
    """A per-channel gain and offset of the image (another recording's exposure) changes
    nothing the network sees; the layer is saved and reloaded with the model."""
    model = fcn_tf.build_model("fpn", 3, widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1),
                               decoder_filters=8, standardize_input=True)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 40, 56, 3)).astype("float32")
    brighter = x * np.float32([1.6, 1.3, 0.8]) + np.float32([0.5, 0.2, -0.3])
    reference = np.asarray(model(x))
    np.testing.assert_allclose(np.asarray(model(brighter)), reference, atol=1e-3)
    plain = fcn_tf.build_model("fpn", 3, widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1),
                               decoder_filters=8)
    assert np.abs(np.asarray(plain(brighter)) - np.asarray(plain(x))).max() > 1e-2
    assert plain.count_params() == model.count_params()  # the layer has no weights
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(reloaded(x)), reference, atol=1e-6)
