"""``load_weights`` itself: format dispatch, ``.keras`` checkpoints, options."""

import numpy as np
import pytest

import fcn_tf
import keras
from fcn_tf.weights import LoadedWeights, WeightsError, load_weights, sniff_format

from weights_fixtures import write_matconvnet_vgg


def tiny(name="fcn8s", seed=0, **options):
    keras.utils.set_random_seed(seed)
    options.setdefault("width_multiplier", 1 / 16)
    return fcn_tf.build_model(name, 3, **options)


def test_exported_from_the_package():
    assert fcn_tf.load_weights is load_weights
    assert "load_weights" in fcn_tf.__all__
    assert issubclass(WeightsError, ValueError)


def test_keras_checkpoint_round_trip(tmp_path):
    source = tiny(seed=1)
    for layer in source.layers:  # score_* start at zero: make every layer distinct
        if layer.weights:
            layer.set_weights([np.random.default_rng(2).normal(size=w.shape) for w in layer.get_weights()])
    path = tmp_path / "fcn8s.keras"
    source.save(path)
    target = tiny(seed=3)
    x = np.random.default_rng(4).normal(size=(1, 29, 35, 3)).astype("float32")
    assert not np.allclose(np.asarray(target(x)), np.asarray(source(x)))

    result = load_weights(target, path)

    assert isinstance(result, LoadedWeights)
    assert result.format == "keras_checkpoint"
    assert result.untouched == () and result.unused == {}
    assert result.preprocessing is None
    for ours, theirs in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(np.asarray(target(x)), np.asarray(source(x)))


def test_keras_checkpoint_strict_and_relaxed(tmp_path):
    # FCN-16s is trained from FCN-32s in the paper: the shared layers load.
    source = tiny("fcn32s", seed=1)
    path = tmp_path / "fcn32s.keras"
    source.save(path)
    target = tiny("fcn16s", seed=2)
    with pytest.raises(WeightsError, match=r"does not have: 'upscore'"):
        load_weights(target, path)
    result = load_weights(target, path, strict=False)
    assert result.unused == {"upscore": "the model has no layer 'upscore'"}
    assert set(result.untouched) == {"score_pool4", "upscore2", "upscore16"}
    np.testing.assert_array_equal(
        target.get_layer("fc7").get_weights()[0], source.get_layer("fc7").get_weights()[0]
    )


def test_keras_checkpoint_of_another_width(tmp_path):
    path = tmp_path / "fcn8s.keras"
    tiny(width_multiplier=1 / 32).save(path)
    with pytest.raises(WeightsError, match=r"layer 'conv1_1' kernel: expected shape \(3, 3, 3, 4\) "
                       r"for this model, received \(3, 3, 3, 2\) in the file"):
        load_weights(tiny(), path)


def test_garbage_keras_checkpoint(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(WeightsError) as info:
        load_weights(tiny(), path)
    assert str(path) in str(info.value)


def test_format_is_sniffed_from_content_before_suffix(tmp_path):
    mat = tmp_path / "vgg.weights"  # a MatConvNet file under an odd name
    write_matconvnet_vgg(mat, "vgg16", 1 / 16, "old")
    assert sniff_format(mat) == "matconvnet"
    npz = tmp_path / "state.npz"
    np.savez(npz, **{"conv1_1.weight": np.zeros((4, 3, 3, 3), np.float32)})
    npz = npz.rename(tmp_path / "state.bin")
    assert sniff_format(npz) == "torch_npz"
    keras_file = tmp_path / "m.keras"
    tiny().save(keras_file)
    assert sniff_format(keras_file) == "keras_checkpoint"
    result = load_weights(tiny(), mat)
    assert result.format == "matconvnet" and "conv1_1" in result.loaded


def test_unknown_format(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x80\x02some pickle")
    with pytest.raises(WeightsError, match=r"unknown weights format \(suffix '.bin'.*Supported: "):
        load_weights(tiny(), path)


def test_bad_channel_order(tmp_path):
    with pytest.raises(WeightsError, match="channel_order must be 'rgb', 'bgr' or None, received 'BGR'"):
        load_weights(tiny(), tmp_path / "x.mat", channel_order="BGR")


def test_rgb_file_into_a_grayscale_model_is_a_shape_error(tmp_path):
    path = tmp_path / "vgg.mat"
    write_matconvnet_vgg(path, "vgg16", 1 / 16, "old")
    with pytest.raises(WeightsError, match=r"layer 'conv1_1' kernel: expected shape \(3, 3, 1, 4\) "
                       r"for this model, received \(3, 3, 3, 4\) in the file"):
        load_weights(tiny(input_channels=1), path)
