"""keras.applications ``.h5`` (legacy Keras 2) and ``.weights.h5`` (Keras 3) files."""

import re

import h5py
import numpy as np
import pytest

import fcn_tf
import keras
from fcn_tf.backbones import IMAGENET
from fcn_tf.weights import WeightsError, keras_h5, load_weights
from fcn_tf.weights.imagenet import backbone_of

from weights_fixtures import (
    keras_model_as_legacy_layers,
    vgg_legacy_layers,
    write_legacy_keras_h5,
)

WIDTH = 1 / 16
TINY_DEEPLAB = {"aspp_filters": 8, "low_level_filters": 4, "decoder_filters": 8}


def randomise(model, seed=0):
    """Random values in every weight, BatchNorm statistics included (variances > 0)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            if "variance" in variable.name:
                values.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
            else:
                values.append(rng.normal(0, 0.1, shape).astype("float32"))
        if values:
            layer.set_weights(values)
    return model


def deeplab(backbone):
    keras.utils.set_random_seed(0)
    return fcn_tf.build_model("deeplabv3plus", 3, backbone=backbone, **TINY_DEEPLAB)


def fcn8s(backbone="vgg16"):
    keras.utils.set_random_seed(0)
    return fcn_tf.build_model("fcn8s", 3, backbone=backbone, width_multiplier=WIDTH)


# ------------------------------------------------------------- VGG, legacy


@pytest.mark.parametrize("include_top", [False, True])
@pytest.mark.parametrize("model_weights", [False, True])
def test_legacy_vgg16_h5(tmp_path, include_top, model_weights):
    layers = vgg_legacy_layers("vgg16", WIDTH, np.random.default_rng(1), include_top)
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_legacy_keras_h5(path, layers, model_weights=model_weights)
    file = {name: [a for _, a in weights] for name, weights in layers if weights}
    model = fcn8s()
    x = np.random.default_rng(2).normal(size=(1, 33, 41, 3)).astype("float32")
    model.get_layer("score_fr").set_weights(
        [np.ones_like(w) for w in model.get_layer("score_fr").get_weights()]
    )
    before = np.asarray(model(x, training=False))

    result = load_weights(model, path)

    assert result.format == "keras_h5"
    assert result.channel_order == "bgr"  # Keras' VGG weights are Caffe's
    assert result.preprocessing.mean == (123.68, 116.779, 103.939)
    # conv1_1 takes RGB: its input channels are the file's BGR ones reversed.
    kernel, bias = model.get_layer("conv1_1").get_weights()
    np.testing.assert_array_equal(kernel, file["block1_conv1"][0][:, :, ::-1, :])
    np.testing.assert_array_equal(bias, file["block1_conv1"][1])
    for name in ("block3_conv2", "block5_conv3"):
        ours = model.get_layer(f"conv{name[5]}_{name[-1]}").get_weights()
        np.testing.assert_array_equal(ours[0], file[name][0])
        np.testing.assert_array_equal(ours[1], file[name][1])
    if include_top:
        fc6 = model.get_layer("fc6").get_weights()[0]
        np.testing.assert_array_equal(fc6, file["fc1"][0].reshape(7, 7, 32, 256))
        np.testing.assert_array_equal(
            model.get_layer("fc7").get_weights()[0], file["fc2"][0][None, None]
        )
        assert set(result.unused) == {"predictions"}
        assert {"fc6", "fc7"} <= set(result.loaded)
    else:
        assert result.unused == {}
        assert {"fc6", "fc7", "score_fr"} <= set(result.untouched)
    assert np.abs(np.asarray(model(x, training=False)) - before).max() > 1e-3


def test_vgg_fc1_reshape_equals_flatten_then_dense(tmp_path):
    layers = vgg_legacy_layers("vgg16", WIDTH, np.random.default_rng(3), include_top=True)
    path = tmp_path / "vgg16.h5"
    write_legacy_keras_h5(path, layers)
    fc1_kernel, fc1_bias = dict(layers)["fc1"][0][1], dict(layers)["fc1"][1][1]
    model = fcn8s()
    load_weights(model, path)
    pool5 = np.random.default_rng(4).normal(size=(2, 7, 7, 32)).astype("float32")
    dense = keras.layers.Flatten()(pool5).numpy() @ fc1_kernel + fc1_bias
    conv = np.asarray(model.get_layer("fc6")(pool5))[:, 0, 0, :]
    np.testing.assert_allclose(conv, np.maximum(dense, 0), rtol=1e-4, atol=1e-4)


def test_channel_order_bgr_model_on_rgb_equals_rgb_model_on_bgr(tmp_path):
    path = tmp_path / "vgg16.h5"
    write_legacy_keras_h5(path, vgg_legacy_layers("vgg16", WIDTH, np.random.default_rng(5)))
    converted, unconverted = fcn8s(), fcn8s()
    load_weights(converted, path)  # default for Keras VGG: the file is BGR
    load_weights(unconverted, path, channel_order="rgb")
    features_c = keras.Model(converted.input, converted.get_layer("pool5").output)
    features_u = keras.Model(unconverted.input, unconverted.get_layer("pool5").output)
    rgb = np.random.default_rng(6).uniform(-100, 100, (1, 30, 34, 3)).astype("float32")
    np.testing.assert_allclose(
        # The two sum the input channels in opposite orders: float32 rounding
        # differs by up to about 1e-4 relative (seen with oneDNN on an AVX2 CPU).
        np.asarray(features_c(rgb)), np.asarray(features_u(rgb[..., ::-1])), rtol=2e-4, atol=1e-4
    )
    assert not np.allclose(np.asarray(features_c(rgb)), np.asarray(features_u(rgb)))


def test_legacy_vgg19_into_vgg16_names_extra_layers(tmp_path):
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_legacy_keras_h5(path, vgg_legacy_layers("vgg19", WIDTH))
    with pytest.raises(WeightsError) as info:
        load_weights(fcn8s("vgg16"), path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "'block3_conv4', 'block4_conv4', 'block5_conv4'" in message


def test_legacy_vgg16_wrong_width_is_a_shape_error(tmp_path):
    path = tmp_path / "vgg16.h5"
    write_legacy_keras_h5(path, vgg_legacy_layers("vgg16", 1 / 32))
    with pytest.raises(WeightsError) as info:
        load_weights(fcn8s(), path)
    assert str(info.value).startswith(
        f"{path}: layer 'conv1_1' (file: 'block1_conv1') kernel: expected shape "
        "(3, 3, 3, 4) for this model, received (3, 3, 3, 2) in the file."
    )


# ------------------------------------------- real keras.applications models


@pytest.fixture(scope="module")
def mobilenet_v2():
    keras.utils.set_random_seed(0)
    ref = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(64, 64, 3)
    )
    return randomise(ref, seed=7)


@pytest.mark.parametrize("layout", ["keras3", "legacy"])
def test_keras_applications_mobilenet_v2(tmp_path, mobilenet_v2, layout):
    ref = mobilenet_v2
    if layout == "keras3":
        path = tmp_path / "mobilenet_v2.weights.h5"
        ref.save_weights(path)
    else:
        path = tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
        write_legacy_keras_h5(path, keras_model_as_legacy_layers(ref))
    model = deeplab("mobilenet_v2")

    result = load_weights(model, path)

    assert result.channel_order == "rgb"
    assert result.preprocessing == fcn_tf.Preprocessing.preset("inception")
    assert set(result.unused) == {"Conv_1", "Conv_1_bn"}
    assert "classifier" in result.untouched and "Conv1" in result.loaded
    for layer in ref.layers:
        if layer.weights and layer.name not in result.unused:
            for ours, theirs in zip(model.get_layer(layer.name).get_weights(), layer.get_weights()):
                np.testing.assert_array_equal(ours, theirs)
    # Up to stride 16 (before DeepLab's dilation) the encoders compute the same.
    x = np.random.default_rng(8).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    ours = keras.Model(model.input, model.get_layer("block_12_add").output)
    theirs = keras.Model(ref.input, ref.get_layer("block_12_add").output)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-4, atol=1e-4)


def test_mobilenet_v2_of_another_alpha_is_a_shape_error(tmp_path):
    ref = keras.applications.MobileNetV2(
        weights=None, include_top=False, alpha=0.5, input_shape=(96, 96, 3)
    )
    path = tmp_path / "mobilenet_v2_0.5.weights.h5"
    ref.save_weights(path)
    with pytest.raises(WeightsError) as info:
        load_weights(deeplab("mobilenet_v2"), path)
    assert str(info.value).startswith(
        f"{path}: layer 'Conv1' kernel: expected shape (3, 3, 3, 32) for this model, "
        "received (3, 3, 3, 16) in the file."
    )
    assert "MobileNetV2 alpha=1.0" in str(info.value)


def test_mobilenet_v2_file_into_a_vgg_model(tmp_path, mobilenet_v2):
    path = tmp_path / "mobilenet_v2.weights.h5"
    mobilenet_v2.save_weights(path)
    with pytest.raises(WeightsError, match="mobilenet_v2 file, but model 'fcn8s_vgg16' has no"):
        load_weights(fcn8s(), path)


@pytest.mark.parametrize("layout", ["keras3", "legacy"])
def test_keras_applications_xception(tmp_path, layout):
    keras.utils.set_random_seed(0)
    ref = randomise(keras.applications.Xception(weights=None, include_top=False), seed=9)
    unnamed = [l.name for l in ref.layers if l.weights and not l.name.startswith("block")]
    assert len(unnamed) == 8  # four residual convolutions and their BatchNorms
    if layout == "keras3":
        path = tmp_path / "xception.weights.h5"
        ref.save_weights(path)
    else:  # Keras 2 names them conv2d_1 ... and batch_normalization_1 ...
        convs = [n for n in unnamed if n.startswith("conv2d")]
        norms = [n for n in unnamed if n.startswith("batch_normalization")]
        rename = {n: f"conv2d_{i}" for i, n in enumerate(convs, start=1)}
        rename.update({n: f"batch_normalization_{i}" for i, n in enumerate(norms, start=1)})
        path = tmp_path / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
        write_legacy_keras_h5(path, keras_model_as_legacy_layers(ref, rename))
    model = deeplab("xception")

    result = load_weights(model, path)

    assert result.unused == {}
    residual_convs = [l for l in ref.layers if re.match(r"^conv2d(_\d+)?$", l.name)]
    residual_bns = [l for l in ref.layers if re.match(r"^batch_normalization(_\d+)?$", l.name)]
    for block, conv, bn in zip((2, 3, 4, 13), residual_convs, residual_bns):
        np.testing.assert_array_equal(
            model.get_layer(f"block{block}_residual_conv").get_weights()[0], conv.get_weights()[0]
        )
        for ours, theirs in zip(
            model.get_layer(f"block{block}_residual_bn").get_weights(), bn.get_weights()
        ):
            np.testing.assert_array_equal(ours, theirs)
    for name in ("block1_conv1", "block7_sepconv2", "block14_sepconv2_bn"):
        for ours, theirs in zip(model.get_layer(name).get_weights(), ref.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    assert len(result.loaded) == sum(1 for l in ref.layers if l.weights)


@pytest.mark.parametrize(
    "include_top", [False, pytest.param(True, marks=pytest.mark.slow)]
)
def test_keras_applications_vgg16_weights_h5(tmp_path, include_top):
    keras.utils.set_random_seed(0)
    ref = keras.applications.VGG16(weights=None, include_top=include_top)
    path = tmp_path / "vgg16.weights.h5"
    ref.save_weights(path)
    model = fcn_tf.build_model("fcn8s" if include_top else "fcn_deconv", 3)
    result = load_weights(model, path)
    np.testing.assert_array_equal(
        model.get_layer("conv1_1").get_weights()[0],
        ref.get_layer("block1_conv1").get_weights()[0][:, :, ::-1, :],
    )
    np.testing.assert_array_equal(
        model.get_layer("conv5_3").get_weights()[0], ref.get_layer("block5_conv3").get_weights()[0]
    )
    if include_top:
        np.testing.assert_array_equal(
            model.get_layer("fc6").get_weights()[0],
            ref.get_layer("fc1").get_weights()[0].reshape(7, 7, 512, 4096),
        )
        assert set(result.unused) == {"predictions"}
    else:
        assert len(result.loaded) == 13


# ----------------------------------------------------------------- bad files


def test_truncated_h5(tmp_path):
    path = tmp_path / "vgg16.h5"
    write_legacy_keras_h5(path, vgg_legacy_layers("vgg16", WIDTH))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not an HDF5 file or truncated") as info:
        load_weights(fcn8s(), path)
    assert str(path) in str(info.value)


def test_h5_that_is_not_keras_weights(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as handle:
        handle["images"] = np.zeros((2, 2))
    with pytest.raises(WeightsError, match="not Keras weights"):
        load_weights(fcn8s(), path)


def test_legacy_h5_of_an_unknown_network(tmp_path):
    path = tmp_path / "resnet.h5"
    write_legacy_keras_h5(path, [("conv1_conv", [("conv1_conv/kernel:0", np.zeros((7, 7, 3, 64)))])])
    with pytest.raises(WeightsError, match="not a keras.applications MobileNetV2, VGG16, VGG19, Xception file"):
        load_weights(fcn8s(), path)


def test_keras3_weights_of_this_packages_model_point_to_keras_checkpoints(tmp_path):
    path = tmp_path / "fcn8s.weights.h5"
    fcn8s().save_weights(path)
    with pytest.raises(WeightsError, match="network this loader does not know.*save and load a .keras"):
        load_weights(fcn8s(), path)


def test_transfer_matching_skips_layers_whose_shapes_differ(tmp_path):
    from fcn_tf.weights.keras_checkpoint import transfer_matching

    source = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    path = tmp_path / "three.keras"
    source.save(path)
    target = fcn_tf.build_model("unet", 5, base_filters=4, depth=2)
    head_before = [w.copy() for w in target.get_layer("head").get_weights()]
    loaded = transfer_matching(target, str(path))
    assert "head" not in loaded and "enc0_conv1" in loaded
    np.testing.assert_array_equal(target.get_layer("enc0_conv1").get_weights()[0],
                                  source.get_layer("enc0_conv1").get_weights()[0])
    for a, b in zip(head_before, target.get_layer("head").get_weights()):
        np.testing.assert_array_equal(a, b)
    other = fcn_tf.build_model("fcn8s", 3, width_multiplier=1 / 16)
    with pytest.raises(WeightsError, match="no layer of this checkpoint matches"):
        transfer_matching(other, str(path))


# ------------------------------------------------------- the backbone rows


@pytest.mark.parametrize("backbone", sorted(IMAGENET))
def test_each_imagenet_row_describes_its_keras_application(backbone):
    """A row's layer names and counts are those of the keras.applications network it names."""
    weights = IMAGENET[backbone]
    ref = keras_h5.reference_model(backbone)
    names = [layer.name for layer in ref.layers]
    assert keras_h5.architecture_of(names) == backbone
    keys = [key for key, name in keras_h5._class_order_keys(ref).items()
            if ref.get_layer(name).weights]
    assert keras_h5._keras3_architecture(keys) == backbone
    assert weights.mapping in keras_h5.MAPPINGS
    assert set(weights.unused) <= set(names) | set(weights.top_dense)


@pytest.mark.parametrize("backbone", sorted(IMAGENET))
def test_a_model_on_each_imagenet_backbone_is_told_by_its_layers(backbone):
    model = deeplab(backbone) if backbone not in ("vgg16", "vgg19") else fcn8s(backbone)
    weights = IMAGENET[backbone]
    assert backbone_of(model) == backbone
    assert weights.first_layer in {layer.name for layer in model.layers}
    assert any(re.match(weights.layers, layer.name) for layer in model.layers)
