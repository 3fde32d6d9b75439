"""bubbliiiing/deeplabv3-plus-pytorch weights: equal logits at output stride 16, the OS 8 layout.

The state dict and the logits were written by PyTorch 2.13 from that code
(``../shared/parity/README.md``).
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import fcn_tf
from fcn_tf.layers import ResizeLike
from fcn_tf.layers.resize import resize_bilinear_align_corners
from fcn_tf.weights import WeightsError, load_weights
from fcn_tf.weights.torch_pickle import read_state_dict
from torch_writer import save_state_dict

PARITY = Path(__file__).resolve().parents[2] / "shared" / "parity"
STATE = PARITY / "deeplab_mobilenet_os16_state_dict.pth"
IO = PARITY / "deeplab_mobilenet_os16_97x131_io.npz"


def reference():
    with np.load(IO) as data:
        return data["__input__"], data["__output__"], json.loads(str(data["__meta__"]))


@pytest.fixture(scope="module")
def models():
    return {
        stride: fcn_tf.from_pytorch(
            STATE, "deeplabv3plus", num_classes=21, backbone="mobilenet_v2", output_stride=stride
        )
        for stride in (16, 8)
    }


def test_same_logits_as_pytorch_os16(models):
    image, expected, _ = reference()
    logits = np.asarray(models[16](image, training=False))
    assert logits.shape == expected.shape == (1, 97, 131, 21)
    scale = np.abs(expected).max()
    error = np.abs(logits - expected).max() / scale
    print(f"DeepLabV3+ MobileNetV2 OS16 97x131: max abs error / max |logit| = {error:.3g} "
          f"(max |logit| {scale:.3g})")
    assert error <= 1e-4


def _taps(model, names, image):
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    return [np.asarray(t) for t in probe([image], training=False)]


def test_os8_equals_os16_on_the_even_grid(models):
    """Dilation d at OS 16 and 2d at OS 8 compute the same values on every second pixel.

    With PyTorch's symmetric padding this is exact: a stride-2 3x3 convolution
    is the stride-1 one sampled at even positions, and a convolution dilated
    by 2d over the full map at even positions reads exactly the taps (and
    zeros) the d-dilated one reads on the half map. So the OS 8 backbone
    output and ASPP atrous branches, taken at [::2, ::2], equal OS 16's,
    which match PyTorch; the stride-4 features are equal as they are.
    """
    image, _, _ = reference()
    names16 = ["block_2_add", "block_16_project_BN", "aspp_rate6_relu", "aspp_rate12_relu", "aspp_rate18_relu"]
    names8 = ["block_2_add", "block_16_project_BN", "aspp_rate12_relu", "aspp_rate24_relu", "aspp_rate36_relu"]
    at16 = _taps(models[16], names16, image)
    at8 = _taps(models[8], names8, image)
    assert at16[0].shape == at8[0].shape == (1, 25, 33, 24)
    np.testing.assert_allclose(at8[0], at16[0], rtol=0, atol=1e-6)
    for name, a, b in zip(names16[1:], at16[1:], at8[1:]):
        assert b.shape[1:3] == (13, 17) and a.shape[1:3] == (7, 9), name
        error = np.abs(b[:, ::2, ::2] - a).max() / np.abs(a).max()
        assert error <= 1e-5, (name, error)


def nostride_dilate_layout(output_stride):
    """The reference's (stride, dilation) of each inverted residual's 3x3 depthwise conv.

    Re-derived from its source: ``features[1:18]`` with first strides at
    ``features[2, 4, 7, 14]``; ``_nostride_dilate(dilate)`` turns a stride-2
    3x3 conv into stride 1 with dilation ``dilate // 2`` and gives other 3x3
    convs dilation ``dilate``; OS 16 applies ``dilate=2`` to ``features[14:]``,
    OS 8 ``2`` to ``features[7:14]`` and ``4`` to ``features[14:]``.
    """
    strides = {2: 2, 4: 2, 7: 2, 14: 2}
    dilate = {16: {i: 2 for i in range(14, 18)},
              8: {**{i: 2 for i in range(7, 14)}, **{i: 4 for i in range(14, 18)}}}[output_stride]
    layout = {}
    for index in range(1, 18):
        stride = strides.get(index, 1)
        if index in dilate:
            layout[index] = (1, dilate[index] // 2) if stride == 2 else (1, dilate[index])
        else:
            layout[index] = (stride, 1)
    return layout


@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilation_layout_matches_the_reference_rule(models, output_stride):
    model = models[output_stride]
    for index, (stride, dilation) in nostride_dilate_layout(output_stride).items():
        block = index - 1
        name = f"block_{block}_depthwise" if block else "expanded_conv_depthwise"
        layer = model.get_layer(name)
        assert (layer.strides, layer.dilation_rate) == ((stride,) * 2, (dilation,) * 2), name
    assert {l.name for l in model.layers if l.name.startswith("aspp_rate") and l.name[9:].isdigit()} == {
        16: {"aspp_rate6", "aspp_rate12", "aspp_rate18"},
        8: {"aspp_rate12", "aspp_rate24", "aspp_rate36"},
    }[output_stride]


def test_parameter_count_is_the_reference_one(models):
    _, _, meta = reference()
    model = models[16]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # Biases of the convolutions before BatchNorm are folded into moving means:
    # ASPP's five branches and projection (6 x 256), shortcut (48), decoder (2 x 256).
    folded = 6 * 256 + 48 + 2 * 256
    assert trainable + folded == meta["param_count"] == 5818149


def test_bias_folded_into_moving_mean(models):
    state = read_state_dict(STATE)
    gamma, beta, mean, variance = models[16].get_layer("aspp_project_bn").get_weights()
    np.testing.assert_array_equal(
        mean, state["aspp.conv_cat.1.running_mean"] - state["aspp.conv_cat.0.bias"]
    )
    np.testing.assert_array_equal(variance, state["aspp.conv_cat.1.running_var"])
    (depthwise,) = models[16].get_layer("block_3_depthwise").get_weights()
    np.testing.assert_array_equal(depthwise, state["backbone.features.4.conv.3.weight"].transpose(2, 3, 0, 1))


def test_failed_load_leaves_every_weight_unchanged():
    """19 classes: every earlier layer checks out, the classifier does not; nothing is written."""
    model = fcn_tf.build_model("deeplabv3plus", 19, variant="bubbliiiing")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsError) as info:
        load_weights(model, STATE)
    assert "layer 'classifier' (file: 'cls_conv.weight') kernel: expected shape (1, 1, 256, 19)" in str(info.value)
    after = model.get_weights()
    assert len(after) == len(before)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)


def test_failed_load_of_a_non_finite_value_leaves_weights_unchanged(tmp_path):
    state = dict(read_state_dict(STATE))
    state["cls_conv.bias"] = state["cls_conv.bias"].copy()
    state["cls_conv.bias"][3] = np.nan
    path = save_state_dict(tmp_path / "nan.pth", state)
    model = fcn_tf.build_model("deeplabv3plus", 21, variant="bubbliiiing")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsError, match="NaN or infinite"):
        load_weights(model, path)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_default_variant_is_refused_with_the_fix():
    model = fcn_tf.build_model("deeplabv3plus", 21)
    with pytest.raises(WeightsError, match="variant='bubbliiiing'"):
        load_weights(model, STATE)


def test_wrong_model_name():
    with pytest.raises(WeightsError, match="loads into 'deeplabv3plus', not 'unet'"):
        fcn_tf.from_pytorch(STATE, "unet", num_classes=21)


def test_bubbliiiing_variant_is_mobilenet_only():
    with pytest.raises(ValueError, match="variant 'bubbliiiing' is defined for backbone 'mobilenet_v2'"):
        fcn_tf.build_model("deeplabv3plus", 21, backbone="xception", variant="bubbliiiing")


@pytest.mark.parametrize("size,out", [((7, 9), (25, 33)), ((25, 33), (97, 131)), ((1, 1), (3, 4)), ((6, 5), (1, 1))])
def test_align_corners_resize_matches_tf1(size, out):
    images = np.random.default_rng(0).normal(size=(2, *size, 3)).astype(np.float32)
    ours = np.asarray(resize_bilinear_align_corners(images, out))
    tf1 = tf.compat.v1.image.resize_bilinear(images, out, align_corners=True).numpy()
    np.testing.assert_allclose(ours, tf1, rtol=0, atol=1e-5)


def test_resize_like_align_corners_round_trips_its_config():
    layer = ResizeLike(align_corners=True, name="r")
    assert ResizeLike.from_config(layer.get_config()).align_corners is True
    assert "align_corners" not in ResizeLike(name="d").get_config()


def test_saved_and_reloaded_model_keeps_the_logits(models, tmp_path):
    image, expected, _ = reference()
    path = tmp_path / "deeplab.keras"
    models[16].save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.get_layer("upsample_to_input").align_corners is True
    np.testing.assert_allclose(
        np.asarray(reloaded(image, training=False)), np.asarray(models[16](image, training=False)),
        rtol=0, atol=1e-5,
    )
