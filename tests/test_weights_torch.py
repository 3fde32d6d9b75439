"""pytorch-fcn state dicts as ``.npz``: same logits as the PyTorch reference, errors.

The fixtures were written by ``tests/fixtures/make_torch_reference.py`` (needs
torch; not run here): random reduced-width FCN-8s/16s/32s in pytorch-fcn's
geometry, a fixed 1x3x40x52 BGR input and the reference logits.
"""

import os

import numpy as np
import pytest

import fcn_tf
from fcn_tf.weights import WeightsError, load_weights
from fcn_tf.weights.torch_npz import PYTORCH_FCN_MEAN_BGR

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
WIDTHS = {"fcn8s": 1 / 16, "fcn16s": 1 / 32, "fcn32s": 1 / 32}


def state_path(name):
    return os.path.join(FIXTURES, f"torch_{name}_state.npz")


def reference():
    with np.load(os.path.join(FIXTURES, "torch_fcn_logits.npz")) as data:
        return {key: data[key] for key in data.files}


def build(name, num_classes=3):
    return fcn_tf.build_model(name, num_classes, width_multiplier=WIDTHS[name])


@pytest.mark.parametrize("name", ["fcn8s", "fcn16s", "fcn32s"])
def test_same_logits_as_pytorch_reference(name):
    ref = reference()
    image_bgr = ref["input_bgr"].transpose(0, 2, 3, 1)  # NCHW -> NHWC
    expected = ref[name].transpose(0, 2, 3, 1)
    model = build(name)

    result = load_weights(model, state_path(name))  # BGR weights -> RGB model

    assert result.format == "torch_npz"
    assert result.channel_order == "bgr"
    assert result.untouched == ()
    logits = np.asarray(model(image_bgr[..., ::-1], training=False))
    scale = np.abs(expected).max()
    assert scale > 10
    difference = np.abs(logits - expected).max()
    print(f"{name}: max |logit difference| {difference:.3g} (logit scale {scale:.3g})")
    assert difference <= 1e-5 * scale


def test_channel_order_rgb_keeps_the_kernel_and_takes_bgr():
    ref = reference()
    model = build("fcn8s")
    result = load_weights(model, state_path("fcn8s"), channel_order="rgb")
    assert result.channel_order == "rgb"
    logits = np.asarray(model(ref["input_bgr"].transpose(0, 2, 3, 1), training=False))
    expected = ref["fcn8s"].transpose(0, 2, 3, 1)
    assert np.abs(logits - expected).max() <= 1e-5 * np.abs(expected).max()


def test_layouts_after_load():
    with np.load(state_path("fcn8s")) as state:
        state = dict(state)
    model = build("fcn8s")
    result = load_weights(model, state_path("fcn8s"))
    # Conv2d (out, in, kh, kw) -> (kh, kw, in, out); BGR input channels reversed.
    np.testing.assert_array_equal(
        model.get_layer("conv1_1").get_weights()[0],
        state["conv1_1.weight"].transpose(2, 3, 1, 0)[:, :, ::-1, :],
    )
    np.testing.assert_array_equal(
        model.get_layer("fc6").get_weights()[0], state["fc6.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(model.get_layer("score_fr").get_weights()[1], state["score_fr.bias"])
    # ConvTranspose2d (in, out, kh, kw) -> Conv2DTranspose (kh, kw, out, in).
    for layer in ("upscore2", "upscore_pool4", "upscore8"):
        (kernel,) = model.get_layer(layer).get_weights()
        np.testing.assert_array_equal(kernel, state[f"{layer}.weight"].transpose(2, 3, 1, 0))
    assert result.preprocessing.mean == tuple(reversed(PYTORCH_FCN_MEAN_BGR))


def write_state(path, state):
    np.savez(path, **state)
    return path


def fcn8s_state():
    with np.load(state_path("fcn8s")) as state:
        return dict(state)


def test_unexpected_key(tmp_path):
    state = fcn8s_state()
    state["score_pool2.weight"] = np.zeros((3, 8, 1, 1), np.float32)
    path = write_state(tmp_path / "fcn8s.npz", state)
    with pytest.raises(WeightsError, match=r"does not have: 'score_pool2'") as info:
        load_weights(build("fcn8s"), path)
    assert str(info.value).startswith(str(path))


def test_missing_key(tmp_path):
    state = fcn8s_state()
    del state["score_pool3.weight"], state["score_pool3.bias"]
    path = write_state(tmp_path / "fcn8s.npz", state)
    with pytest.raises(WeightsError, match=r"lacks layers .*'score_pool3'"):
        load_weights(build("fcn8s"), path)


def test_mis_shaped_key_names_the_file_key_and_shapes(tmp_path):
    path = state_path("fcn8s")
    model = build("fcn8s", num_classes=21)
    before = model.get_layer("conv1_1").get_weights()[0]
    with pytest.raises(WeightsError) as info:
        load_weights(model, path)
    message = str(info.value)
    assert message.startswith(
        f"{path}: layer 'score_fr' (file: 'score_fr.weight') kernel: expected shape "
        "(1, 1, 256, 21) for this model, received (1, 1, 256, 3) in the file"
    )
    assert "same number of classes" in message
    np.testing.assert_array_equal(model.get_layer("conv1_1").get_weights()[0], before)


def test_fcn8s_state_into_fcn16s(tmp_path):
    with pytest.raises(WeightsError, match=r"does not have: .*'score_pool3'"):
        load_weights(fcn_tf.build_model("fcn16s", 3, width_multiplier=1 / 16), state_path("fcn8s"))


def test_non_parameter_key(tmp_path):
    state = fcn8s_state()
    state["conv1_1.running_mean"] = np.zeros(4, np.float32)
    path = write_state(tmp_path / "bad.npz", state)
    with pytest.raises(WeightsError, match=r"'conv1_1.running_mean' is not '<layer>.weight'"):
        load_weights(build("fcn8s"), path)


def test_truncated_npz(tmp_path):
    data = open(state_path("fcn8s"), "rb").read()
    path = tmp_path / "fcn8s.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not an .npz archive or truncated") as info:
        load_weights(build("fcn8s"), path)
    assert str(path) in str(info.value)
