"""MatConvNet VGG ``.mat`` files: round trip, kernel orientation, mean, bad files."""

import numpy as np
import pytest

import fcn_tf
import keras
from fcn_tf.weights import WeightsError, load_weights

from weights_fixtures import MEAN_RGB, write_matconvnet_vgg

WIDTH = 1 / 16


def build(name="fcn8s", backbone="vgg16", **options):
    keras.utils.set_random_seed(0)
    return fcn_tf.build_model(name, 3, backbone=backbone, width_multiplier=WIDTH, **options)


def kernel(model, name):
    return model.get_layer(name).get_weights()


@pytest.mark.parametrize("version", ["old", "new"])
@pytest.mark.parametrize("variant", ["vgg16", "vgg19"])
def test_mat_round_trip(tmp_path, version, variant):
    path = tmp_path / f"imagenet-vgg-verydeep-{variant[3:]}.mat"
    mean = (120.5, 110.25, 100.125)
    written = write_matconvnet_vgg(path, variant, WIDTH, version, np.random.default_rng(1), mean=mean)
    model = build(backbone=variant)
    x = np.random.default_rng(2).normal(size=(1, 37, 45, 3)).astype("float32")
    # score_fr starts at zero, so give it weights to see fc6/fc7 in the logits.
    score = model.get_layer("score_fr")
    score.set_weights([np.ones_like(w) for w in score.get_weights()])
    before = np.asarray(model(x, training=False))

    result = load_weights(model, path)

    assert result.format == "matconvnet"
    assert result.channel_order == "rgb"
    assert result.preprocessing == fcn_tf.Preprocessing(mean=mean, std=(1.0, 1.0, 1.0))
    assert set(result.unused) == {"fc8"}
    assert set(result.loaded) == set(written) - {"fc8"}
    assert set(result.untouched) == {
        "score_fr", "score_pool4", "score_pool3", "upscore2", "upscore_pool4", "upscore8"
    }
    for name in result.loaded:
        file_kernel, file_bias = written[name]
        keras_kernel, keras_bias = kernel(model, name)
        np.testing.assert_array_equal(keras_kernel, file_kernel.transpose(1, 0, 2, 3))
        np.testing.assert_array_equal(keras_bias, file_bias)
    after = np.asarray(model(x, training=False))
    assert np.abs(after - before).max() > 1e-3


def test_mat_kernel_orientation_with_an_asymmetric_kernel(tmp_path):
    # One non-zero tap in the file's (kw, kh, in, out) kernel: width index 2,
    # height index 0, input channel R, output channel 0. Read as (kh, kw) it
    # looks one row up and one column right: out[y, x] = in[y - 1, x + 1].
    # Read without the transpose it would look one row down and one left.
    channels = 4
    file_kernel = np.zeros((3, 3, 3, channels), np.float32)
    file_kernel[2, 0, 0, 0] = 1.0
    path = tmp_path / "asymmetric.mat"
    write_matconvnet_vgg(path, "vgg16", WIDTH, "new", kernels={"conv1_1": file_kernel})
    model = build()
    load_weights(model, path)
    model.get_layer("conv1_1").set_weights(
        [model.get_layer("conv1_1").get_weights()[0], np.zeros(channels, np.float32)]
    )

    image = np.zeros((1, 9, 11, 3), np.float32)
    image[0, 4, 5, 0] = 1.0  # a single red pixel
    image[0, 2, 2, 1] = 5.0  # green must not leak into an R tap
    conv1_1 = keras.Model(model.input, model.get_layer("conv1_1").output)
    response = np.asarray(conv1_1(image))[0, :, :, 0]
    # conv1_1 runs on the input padded by 100 with a valid 3x3 window, so
    # out[Y, X] sees padded rows Y..Y+2: tap (dy=0, dx=2) reads in[Y-100, X-98].
    peak = np.unravel_index(np.argmax(response), response.shape)
    assert peak == (4 + 100, 5 + 98)
    assert response[peak] == 1.0
    assert np.count_nonzero(response) == 1


def test_mat_into_fcn_deconv_skips_fc6_fc7(tmp_path):
    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    written = write_matconvnet_vgg(path, "vgg16", WIDTH, "old")
    model = build("fcn_deconv")
    result = load_weights(model, path)
    assert set(result.unused) == {"fc6", "fc7", "fc8"}
    assert "no layer 'fc6'" in result.unused["fc6"]
    assert set(result.loaded) == {n for n in written if n.startswith("conv")}
    np.testing.assert_array_equal(
        kernel(model, "conv5_3")[0], written["conv5_3"][0].transpose(1, 0, 2, 3)
    )
    assert "deconv1" in result.untouched


@pytest.mark.parametrize("shape", [(224, 224, 3), (1, 1, 3), (3, 1), (1, 3)])
def test_mat_average_image_shapes_reduce_to_rgb_mean(tmp_path, shape):
    path = tmp_path / "mean.mat"
    write_matconvnet_vgg(path, "vgg16", WIDTH, "new", average_image_shape=shape)
    result = load_weights(build(), path)
    np.testing.assert_allclose(result.preprocessing.mean, MEAN_RGB, rtol=1e-6)
    assert result.preprocessing.std == (1.0, 1.0, 1.0)


@pytest.mark.slow
def test_mat_real_vgg16_shapes_into_full_fcn8s(tmp_path):
    # Real VGG16 shapes once, including fc6 (7, 7, 512, 4096) and fc7.
    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    rng = np.random.default_rng(3)
    written = write_matconvnet_vgg(path, "vgg16", 1.0, "new", rng, classes=10)
    model = fcn_tf.build_model("fcn8s", 21)
    result = load_weights(model, path)
    np.testing.assert_array_equal(
        kernel(model, "fc6")[0], written["fc6"][0].transpose(1, 0, 2, 3)
    )
    np.testing.assert_array_equal(kernel(model, "fc7")[1], written["fc7"][1])
    assert len(result.loaded) == 15


# ------------------------------------------------------------------ bad files


def test_missing_file(tmp_path):
    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    with pytest.raises(WeightsError, match="not found") as info:
        load_weights(build(), path)
    assert str(path) in str(info.value)
    assert "weights/README.md" in str(info.value)


@pytest.mark.parametrize("repeat", [1, 20])
def test_html_page_saved_as_mat(tmp_path, repeat):
    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    path.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>" * repeat)
    with pytest.raises(WeightsError, match="not a MATLAB file or truncated") as info:
        load_weights(build(), path)
    assert str(path) in str(info.value)


def test_truncated_mat(tmp_path):
    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    write_matconvnet_vgg(path, "vgg16", WIDTH, "old")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    model = build()
    original = kernel(model, "conv1_1")[0]
    with pytest.raises(WeightsError, match="not a MATLAB file or truncated") as info:
        load_weights(model, path)
    assert str(path) in str(info.value)
    np.testing.assert_array_equal(kernel(model, "conv1_1")[0], original)


def test_mat_without_layers(tmp_path):
    import scipy.io

    path = tmp_path / "other.mat"
    scipy.io.savemat(path, {"net": np.zeros((2, 2))})
    with pytest.raises(WeightsError, match="no 'layers' variable.*net"):
        load_weights(build(), path)


def test_vgg19_file_into_vgg16_model_names_extra_layers(tmp_path):
    path = tmp_path / "imagenet-vgg-verydeep-19.mat"
    write_matconvnet_vgg(path, "vgg19", WIDTH, "new")
    model = build(backbone="vgg16")
    original = kernel(model, "conv1_1")[0]
    with pytest.raises(WeightsError) as info:
        load_weights(model, path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "does not have" in message
    for name in ("conv3_4", "conv4_4", "conv5_4"):
        assert repr(name) in message
    assert "-16.mat for backbone='vgg16'" in message
    np.testing.assert_array_equal(kernel(model, "conv1_1")[0], original)


def test_vgg16_file_into_vgg19_model_names_missing_layers(tmp_path):
    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    write_matconvnet_vgg(path, "vgg16", WIDTH, "old")
    with pytest.raises(WeightsError) as info:
        load_weights(build(backbone="vgg19"), path)
    message = str(info.value)
    assert "lacks layers" in message
    for name in ("conv3_4", "conv4_4", "conv5_4"):
        assert repr(name) in message


def test_mis_shaped_layer_names_layer_and_both_shapes(tmp_path):
    path = tmp_path / "imagenet-vgg-verydeep-19.mat"
    write_matconvnet_vgg(path, "vgg19", 1 / 32, "old")  # half the model's width
    with pytest.raises(WeightsError) as info:
        load_weights(build(backbone="vgg19"), path)
    assert str(info.value).startswith(
        f"{path}: layer 'conv1_1' kernel: expected shape (3, 3, 3, 4) for this model, "
        "received (3, 3, 3, 2) in the file"
    )
    assert "width_multiplier=1.0" in str(info.value)


def test_mat_file_missing_a_layer(tmp_path):
    path = tmp_path / "broken.mat"
    write_matconvnet_vgg(path, "vgg16", WIDTH, "old", skip=("conv4_2",))
    with pytest.raises(WeightsError, match="lacks layers.*'conv4_2'"):
        load_weights(build(), path)


def test_mat_into_a_model_without_vgg(tmp_path):
    path = tmp_path / "imagenet-vgg-verydeep-16.mat"
    write_matconvnet_vgg(path, "vgg16", WIDTH, "old")
    model = fcn_tf.build_model("unet", 2, base_filters=4, depth=2)
    with pytest.raises(WeightsError, match="has none. Build a model with a VGG backbone"):
        load_weights(model, path)
