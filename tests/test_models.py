"""Checks every registered model and backbone goes through (the STYLE's test driver)."""

import numpy as np
import pytest

import fcn_tf
import keras
from fcn_tf.layers import CenterPadLike

from model_cases import CASE_IDS, CASES


@pytest.fixture(scope="module")
def built():
    """Build each tiny case once per module."""
    cache = {}

    def get(name, backbone, options, num_classes=3, **extra):
        key = (name, backbone, num_classes, tuple(sorted(extra.items())))
        if key not in cache:
            keras.utils.set_random_seed(0)
            cache[key] = fcn_tf.build_model(
                name, num_classes, backbone=backbone, **options, **extra
            )
        return cache[key]

    return get


@pytest.mark.parametrize("name,backbone,options", CASES, ids=CASE_IDS)
def test_same_size_out_as_in(built, name, backbone, options):
    model = built(name, backbone, options)
    assert model.input_shape == (None, None, None, 3)
    x = np.random.default_rng(0).normal(size=(2, 97, 131, 3)).astype("float32")
    y = model(x, training=False)
    assert tuple(y.shape) == (2, 97, 131, 3)
    assert y.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(y)))


@pytest.mark.parametrize("name", ["fcn8s", "fcn16s", "fcn32s"])
@pytest.mark.parametrize("size", [(1, 1), (224, 224), (500, 375)])
def test_fcn_any_size(built, name, size):
    model = built(name, "vgg16", {"width_multiplier": 1 / 16})
    y = model(np.zeros((1, *size, 3), "float32"))
    assert tuple(y.shape) == (1, *size, 3)


@pytest.mark.parametrize(
    "name,expected",
    [("fcn8s", 134_489_759), ("fcn16s", 134_815_994), ("fcn32s", 136_152_917)],
)
def test_fcn_vgg16_parameter_counts(name, expected):
    # Counts of the reference Caffe/PyTorch FCN with 21 classes.
    assert fcn_tf.build_model(name, 21).count_params() == expected


def test_deeplabv3plus_mobilenet_v2_trainable_count_matches_reference():
    # The reference count 5,818,149 has a bias on each of the eight 256-channel
    # convolutions and the 48-channel projection that precede BatchNorm; this
    # package omits those 2,096 redundant biases (BatchNorm's beta does the job).
    model = fcn_tf.build_model("deeplabv3plus", 21, backbone="mobilenet_v2")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable + 8 * 256 + 48 == 5_818_149


@pytest.mark.parametrize("name,backbone,options", CASES, ids=CASE_IDS)
def test_config_round_trip(built, name, backbone, options, tmp_path):
    model = built(name, backbone, options)
    x = np.random.default_rng(1).normal(size=(1, 37, 45, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))

    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x, training=False)), expected, atol=1e-6)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), expected)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("name,backbone,options", CASES, ids=CASE_IDS)
def test_training_steps_lower_the_loss(name, backbone, options):
    keras.utils.set_random_seed(0)
    model = fcn_tf.build_model(name, 3, backbone=backbone, **options)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 48, 40, 3)).astype("float32")
    y = (x[..., 0] > 0).astype("int32") + (x[..., 1] > 1).astype("int32")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    # train_on_batch returns the training-mode loss before each update.
    losses = [float(model.train_on_batch(x, y)) for _ in range(4)]
    assert losses[-1] < losses[0], losses


def test_unet_binary_grayscale():
    model = fcn_tf.build_model("unet", 1, input_channels=1, base_filters=4, depth=2)
    y = model(np.zeros((2, 30, 17, 1), "float32"))
    assert tuple(y.shape) == (2, 30, 17, 1)


def test_unet_valid_is_the_paper_network():
    model = fcn_tf.build_model(
        "unet", 2, padding="valid", input_channels=1, input_size=(572, 572), base_filters=2
    )
    assert model.output_shape == (None, 388, 388, 2)
    assert fcn_tf.models.unet.unet_valid_output_size(572) == 388


def test_unet_valid_rejects_bad_size_with_nearest_valid_sizes():
    with pytest.raises(ValueError, match=r"cannot take size 570.*Nearest valid sizes: 556, 572"):
        fcn_tf.build_model("unet", 2, padding="valid", input_size=(570, 570), base_filters=2)


def test_unet_full_size_filters():
    model = fcn_tf.build_model("unet", 2)
    filters = [model.get_layer(f"enc{level}_conv2").filters for level in range(5)]
    assert filters == [64, 128, 256, 512, 1024]


def test_unet_milesial_variant_takes_any_size_and_equals_the_default_at_multiples(tmp_path):
    """Same weights: equal where neither pads (32x48, depth 3), same size out at 37x45, saved and reloaded."""
    keras.utils.set_random_seed(0)
    model = fcn_tf.build_model("unet", 3, base_filters=4, depth=3, variant="milesial")
    default = fcn_tf.build_model("unet", 3, base_filters=4, depth=3)
    assert model.input_shape == (None, None, None, 3)
    assert model.count_params() == default.count_params()
    for layer in model.layers:
        if layer.weights:
            default.get_layer(layer.name).set_weights(layer.get_weights())
    rng = np.random.default_rng(0)
    even = rng.normal(size=(2, 32, 48, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(model(even, training=False)), np.asarray(default(even, training=False)),
        rtol=0, atol=1e-5)
    odd = rng.normal(size=(2, 37, 45, 3)).astype("float32")
    logits = np.asarray(model(odd, training=False))
    assert logits.shape == (2, 37, 45, 3)
    assert np.abs(logits - np.asarray(default(odd, training=False))).max() > 1e-3

    path = tmp_path / "unet.keras"
    model.save(path)
    np.testing.assert_array_equal(np.asarray(keras.models.load_model(path)(odd, training=False)), logits)


def test_center_pad_like_puts_the_odd_row_after():
    x = np.ones((1, 2, 3, 1), "float32")
    padded = np.asarray(CenterPadLike()(x, np.zeros((1, 3, 6, 1), "float32")))[0, ..., 0]
    np.testing.assert_array_equal(padded, [[0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("options,message", [
    ({"variant": "pytorch"}, r"variant must be one of 'default', 'milesial', received 'pytorch'"),
    ({"variant": "milesial", "padding": "valid"}, r"variant='milesial' needs padding='same'"),
    ({"variant": "milesial", "input_size": (15, 64)}, r"needs sides of at least 16.*input_size=\(15, 64\)"),
])
def test_unet_variant_errors(options, message):
    with pytest.raises(ValueError, match=message):
        fcn_tf.build_model("unet", 2, **options)


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("backbone", ["mobilenet_v2", "xception"])
def test_deeplab_output_stride(backbone, output_stride):
    from fcn_tf.backbones import get_backbone

    inputs = keras.Input((None, None, 3))
    features = get_backbone(backbone)(inputs, output_stride=output_stride)
    assert features.strides == {
        "P1": 2, "P2": 4, "P3": 8, "P4": min(16, output_stride), "P5": output_stride,
    }
    model = keras.Model(inputs, [features["P2"], features["P5"]])
    low, high = model(np.zeros((1, 64, 64, 3), "float32"))
    assert low.shape[1] == 64 // 4 and high.shape[1] == 64 // output_stride


def test_deeplab_aspp_rates_double_at_stride_8():
    model = fcn_tf.build_model(
        "deeplabv3plus", 2, output_stride=8, aspp_filters=4, low_level_filters=4, decoder_filters=4
    )
    rates = sorted(
        model.get_layer(n).dilation_rate[0] for n in ("aspp_rate12", "aspp_rate24", "aspp_rate36")
    )
    assert rates == [12, 24, 36]


@pytest.mark.parametrize("variant,expected", [("vgg16", (2, 2, 3, 3, 3)), ("vgg19", (2, 2, 4, 4, 4))])
def test_vgg_backbone_strides_and_names(variant, expected):
    from fcn_tf.backbones import get_backbone
    from fcn_tf.backbones.vgg import vgg_layer_names

    inputs = keras.Input((64, 64, 3))
    features = get_backbone(variant)(inputs, width_multiplier=1 / 16)
    assert features.strides == {f"P{n}": 2**n for n in range(1, 6)}
    assert [f.shape[1] for f in features.values()] == [32, 16, 8, 4, 2]
    names = vgg_layer_names(variant)
    assert len(names) == sum(expected)
    assert names[-1] == f"conv5_{expected[-1]}"


def test_fcn_upsampling_is_bilinear_and_bias_free():
    model = fcn_tf.build_model("fcn8s", 2, width_multiplier=1 / 16)
    layer = model.get_layer("upscore2")
    assert not layer.use_bias
    kernel = np.asarray(layer.kernel)
    # 1D bilinear filter for factor 2: [0.25, 0.75, 0.75, 0.25]; channels not mixed.
    f = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(kernel[:, :, 0, 0], np.outer(f, f), atol=1e-7)
    assert np.all(kernel[:, :, 0, 1] == 0)
    assert model.get_layer("upscore8").kernel.shape == (16, 16, 2, 2)
    assert model.get_layer("fc6").kernel_size == (7, 7)


def test_unknown_model_suggests_closest():
    with pytest.raises(ValueError, match=r"Unknown model 'fcn_8s'.*Did you mean 'fcn8s'\?"):
        fcn_tf.build_model("fcn_8s", 21)


def test_unknown_backbone_lists_options():
    with pytest.raises(
        ValueError,
        match=r"Unknown backbone for 'deeplabv3plus' 'mobilenetv2'. Available: mobilenet_v2, xception. Did you mean 'mobilenet_v2'\?",
    ):
        fcn_tf.build_model("deeplabv3plus", 21, backbone="mobilenetv2")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown option 'output_strid'.*Did you mean 'output_stride'"):
        fcn_tf.build_model("deeplabv3plus", 21, output_strid=8)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        fcn_tf.build_model("unet", 0)
