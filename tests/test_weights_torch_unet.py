"""U-Net state dicts in milesial/Pytorch-UNet's layout, and pytorch-fcn FCNs, from .pth files.

The reference is a NumPy forward pass of that layout (``UNet(bilinear=False)``
of ``unet/unet_model.py``, ``unet/unet_parts.py``), in NCHW like PyTorch:
conv 3x3 padding 1, BatchNorm in eval mode (eps 1e-5), ReLU, 2x2 max pooling
(an odd last row/column dropped), ConvTranspose2d(k=2, s=2), the upsampled map
zero-padded to its skip's size (``diff // 2`` before, the rest after),
``cat([skip, up])``, 1x1 ``outc``. A state dict and logits written by PyTorch
itself are in ``../shared/parity`` (``README.md`` there).
"""

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import fcn_tf
from fcn_tf.exporting import export_saved_model
from fcn_tf.weights import WeightsError, load_weights
from fcn_tf.weights.torch_pickle import read_state_dict
from torch_writer import save_state_dict

EPS = 1e-5
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
PARITY = Path(__file__).resolve().parents[2] / "shared" / "parity"
MILESIAL_STATE = PARITY / "unet_milesial_w8_state_dict.pth"
MILESIAL_IO = PARITY / "unet_milesial_w8_97x131_io.npz"


# ---- NumPy reference of the PyTorch layout (NCHW, PyTorch weight layouts) ----

def conv2d(x, weight, bias=None):
    """``nn.Conv2d(k, padding=k // 2)``: cross-correlation, weight (out, in, kh, kw)."""
    k = weight.shape[-1]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    height, width = x.shape[2:]
    out = np.zeros((x.shape[0], weight.shape[0], height, width))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy:dy + height, dx:dx + width]
            out += np.einsum("nihw,oi->nohw", patch, weight[:, :, dy, dx])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def batch_norm(x, state, prefix):
    scale = state[f"{prefix}.weight"] / np.sqrt(state[f"{prefix}.running_var"] + EPS)
    shift = state[f"{prefix}.bias"] - state[f"{prefix}.running_mean"] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def double_conv(x, state, prefix):
    for conv, bn in ((0, 1), (3, 4)):
        x = conv2d(x, state[f"{prefix}.{conv}.weight"], state.get(f"{prefix}.{conv}.bias"))
        x = np.maximum(batch_norm(x, state, f"{prefix}.{bn}"), 0)
    return x


def max_pool(x):
    """``nn.MaxPool2d(2)``: floor mode, an odd last row/column is dropped."""
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def pad_like(x, skip):
    """``Up.forward``'s ``F.pad``: ``diff // 2`` before, ``diff - diff // 2`` after."""
    dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
    return np.pad(x, ((0, 0), (0, 0), (dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2)))


def conv_transpose_2x2(x, weight, bias):
    """``nn.ConvTranspose2d(in, out, 2, stride=2)``: out[2i+a, 2j+b] = x[i, j] @ W[:, :, a, b]."""
    n, _, h, w = x.shape
    out = np.zeros((n, weight.shape[1], 2 * h, 2 * w))
    for a in range(2):
        for b in range(2):
            out[:, :, a::2, b::2] = np.einsum("nihw,io->nohw", x, weight[:, :, a, b])
    return out + bias[None, :, None, None]


def unet_reference(state, x, depth):
    skips = [double_conv(x, state, "inc.double_conv")]
    for level in range(1, depth + 1):
        skips.append(double_conv(max_pool(skips[-1]), state, f"down{level}.maxpool_conv.1.double_conv"))
    x = skips.pop()
    for step in range(1, depth + 1):
        up = conv_transpose_2x2(x, state[f"up{step}.up.weight"], state[f"up{step}.up.bias"])
        skip = skips.pop()
        x = double_conv(np.concatenate([skip, pad_like(up, skip)], axis=1), state, f"up{step}.conv.double_conv")
    return conv2d(x, state["outc.conv.weight"], state["outc.conv.bias"])


# ---- random state dicts in that layout ----

def random_state(rng, channels, classes, base, depth, conv_bias):
    state = {}

    def conv(name, cin, cout, k, bias):
        state[f"{name}.weight"] = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        if bias:
            state[f"{name}.bias"] = rng.normal(0, 0.3, cout).astype(np.float32)

    def bn(name, c):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[f"{name}.bias"] = rng.normal(0, 0.2, c).astype(np.float32)
        state[f"{name}.running_mean"] = rng.normal(0, 0.3, c).astype(np.float32)
        state[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
        state[f"{name}.num_batches_tracked"] = np.array(100, np.int64)

    def double(prefix, cin, cout):
        conv(f"{prefix}.0", cin, cout, 3, conv_bias)
        bn(f"{prefix}.1", cout)
        conv(f"{prefix}.3", cout, cout, 3, conv_bias)
        bn(f"{prefix}.4", cout)

    double("inc.double_conv", channels, base)
    for level in range(1, depth + 1):
        double(f"down{level}.maxpool_conv.1.double_conv", base * 2 ** (level - 1), base * 2**level)
    for step in range(1, depth + 1):
        cin = base * 2 ** (depth - step + 1)
        state[f"up{step}.up.weight"] = rng.normal(0, 0.3, (cin, cin // 2, 2, 2)).astype(np.float32)
        state[f"up{step}.up.bias"] = rng.normal(0, 0.1, cin // 2).astype(np.float32)
        double(f"up{step}.conv.double_conv", cin, cin // 2)
    conv("outc.conv", base, classes, 1, True)
    return state


CASES = [
    # (depth, conv_bias, legacy, wrap, height, width, channels)
    (2, False, False, None, 12, 20, 3),
    (3, True, False, "model", 16, 24, 3),
    (2, True, True, "state_dict", 8, 12, 1),
    # Sides that are not multiples of 2**depth: milesial's padding of the upsampled maps.
    (2, False, False, None, 13, 22, 3),
    (3, True, False, None, 21, 17, 1),
]


@pytest.mark.parametrize("depth,conv_bias,legacy,wrap,height,width,channels", CASES)
def test_same_logits_as_the_numpy_reference(tmp_path, depth, conv_bias, legacy, wrap, height, width, channels):
    rng = np.random.default_rng(depth)
    state = random_state(rng, channels, 3, base=4, depth=depth, conv_bias=conv_bias)
    path = save_state_dict(tmp_path / "unet.pth", state, legacy=legacy, wrap=wrap)
    image = rng.normal(size=(2, channels, height, width)).astype(np.float32)
    expected = unet_reference(state, image.astype(np.float64), depth).transpose(0, 2, 3, 1)

    model = fcn_tf.from_pytorch(path, "unet", num_classes=3)

    assert model.get_layer("enc0_conv1").filters == 4
    assert f"enc{depth}_conv1" in {l.name for l in model.layers}
    logits = np.asarray(model(image.transpose(0, 2, 3, 1), training=False))
    scale = np.abs(expected).max()
    error = np.abs(logits - expected).max() / scale
    print(f"U-Net depth {depth} bias {conv_bias}: max abs error / max |logit| = {error:.2g}")
    assert error <= 1e-5


@pytest.fixture(scope="module")
def milesial():
    """The PyTorch-written U-Net (base width 8, depth 4) as loaded, with its input and logits."""
    with np.load(MILESIAL_IO) as data:
        image, expected = data["__input__"], data["__output__"]
    return fcn_tf.from_pytorch(MILESIAL_STATE, "unet", num_classes=2), image, expected


def test_same_logits_as_pytorch_at_97x131(milesial):
    model, image, expected = milesial
    assert image.shape[1:3] == (97, 131)  # not multiples of 2**4
    logits = np.asarray(model(image, training=False))
    assert logits.shape == expected.shape == (1, 97, 131, 2)
    scale = np.abs(expected).max()
    error = np.abs(logits - expected).max() / scale
    print(f"milesial U-Net 97x131: max abs error / max |logit| = {error:.3g} (max |logit| {scale:.3g})")
    assert error <= 1e-4
    np.testing.assert_array_equal(logits.argmax(-1), expected.argmax(-1))


def test_numpy_reference_equals_pytorch_at_97x131():
    """The reference of the odd-size CASES, checked against PyTorch's own logits."""
    state = {key: np.asarray(value) for key, value in read_state_dict(MILESIAL_STATE).items()}
    with np.load(MILESIAL_IO) as data:
        image, expected = data["__input__"], data["__output__"]
    logits = unet_reference(state, image.transpose(0, 3, 1, 2).astype(np.float64), depth=4)
    error = np.abs(logits.transpose(0, 2, 3, 1) - expected).max()
    assert error <= 1e-5 * np.abs(expected).max()


def test_default_variant_equals_milesial_only_at_multiples_of_the_stride(milesial):
    """Same weights: equal at 96x128 (nothing is padded in either), other logits at 97x131."""
    model, image, expected = milesial
    default = fcn_tf.build_model("unet", 2, base_filters=8, depth=4)
    load_weights(default, MILESIAL_STATE)
    crop = image[:, :96, :128]
    np.testing.assert_allclose(
        np.asarray(default(crop, training=False)), np.asarray(model(crop, training=False)),
        rtol=0, atol=1e-5 * np.abs(expected).max())
    error = np.abs(np.asarray(default(image, training=False)) - expected).max()
    assert error > 0.1 * np.abs(expected).max()


def test_milesial_variant_is_built_and_a_conflicting_variant_refused(milesial):
    model, _, _ = milesial
    names = {layer.name for layer in model.layers}
    assert {"dec0_pad", "dec3_pad"} <= names
    assert not names & {"pad_to_multiple", "crop_to_input"}
    with pytest.raises(WeightsError, match=r"need variant='milesial', received variant='default'\. Leave variant out"):
        fcn_tf.from_pytorch(MILESIAL_STATE, "unet", num_classes=2, variant="default")


def test_saved_model_at_free_sizes_equals_pytorch(milesial, tmp_path):
    """Exported with a (None, None, None, 3) signature: PyTorch's logits at 97x131, any size after."""
    model, image, expected = milesial
    identity = fcn_tf.Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    export_saved_model(model, identity, str(tmp_path / "unet"))
    loaded = tf.saved_model.load(str(tmp_path / "unet"))
    logits = loaded.logits(tf.constant(image)).numpy()
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()
    other = np.random.default_rng(5).normal(size=(2, 50, 77, 3)).astype("float32")
    reference = np.asarray(model(other, training=False))
    served = loaded.logits(tf.constant(other)).numpy()
    assert served.shape == (2, 50, 77, 2)
    assert np.abs(served - reference).max() <= 1e-5 * np.abs(reference).max()


def test_transposed_kernel_is_not_flipped(tmp_path):
    """A one-hot ConvTranspose2d weight at (a, b) writes each input pixel to offset (a, b)."""
    state = random_state(np.random.default_rng(0), 3, 2, base=4, depth=1, conv_bias=False)
    path = save_state_dict(tmp_path / "unet.pth", state)
    model = fcn_tf.from_pytorch(path, "unet", num_classes=2)
    (kernel, _) = model.get_layer("dec0_up").get_weights()
    np.testing.assert_array_equal(kernel, state["up1.up.weight"].transpose(2, 3, 1, 0))
    assert kernel[0, 1, 2, 5] == state["up1.up.weight"][5, 2, 0, 1]


def test_load_weights_reports_format_and_counters(tmp_path):
    state = random_state(np.random.default_rng(1), 3, 2, base=4, depth=2, conv_bias=True)
    path = save_state_dict(tmp_path / "unet.pt", state)
    model = fcn_tf.build_model("unet", 2, base_filters=4, depth=2)
    result = load_weights(model, path)
    assert result.format == "torch_pth"
    assert result.untouched == ()
    assert result.channel_order == "rgb"
    assert "inc.double_conv.1.num_batches_tracked" in result.unused
    np.testing.assert_array_equal(
        model.get_layer("enc0_bn1").get_weights()[2],
        state["inc.double_conv.1.running_mean"] - state["inc.double_conv.0.bias"],
    )


def test_depth_mismatch_leaves_weights_unchanged(tmp_path):
    state = random_state(np.random.default_rng(2), 3, 2, base=4, depth=3, conv_bias=False)
    path = save_state_dict(tmp_path / "unet.pth", state)
    model = fcn_tf.build_model("unet", 2, base_filters=4, depth=2)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsError, match=r"does not have: .*'down3.maxpool_conv.1.double_conv.0'"):
        load_weights(model, path)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_width_mismatch_names_the_key_and_shapes(tmp_path):
    state = random_state(np.random.default_rng(3), 3, 2, base=4, depth=2, conv_bias=False)
    path = save_state_dict(tmp_path / "unet.pth", state)
    model = fcn_tf.build_model("unet", 2, base_filters=8, depth=2)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsError) as info:
        load_weights(model, path)
    assert "layer 'enc0_conv1' (file: 'inc.double_conv.0.weight') kernel: expected shape (3, 3, 3, 8)" in str(info.value)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_bilinear_unet_is_refused(tmp_path):
    state = random_state(np.random.default_rng(4), 3, 2, base=4, depth=2, conv_bias=False)
    del state["up1.up.weight"], state["up1.up.bias"]
    path = save_state_dict(tmp_path / "unet.pth", state)
    with pytest.raises(WeightsError, match="bilinear upsampling"):
        fcn_tf.from_pytorch(path, "unet", num_classes=2)


def test_unknown_layout(tmp_path):
    path = save_state_dict(tmp_path / "x.pth", {"encoder.conv.weight": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(WeightsError, match="unknown layout .*'encoder.conv.weight'.*milesial"):
        fcn_tf.from_pytorch(path, "unet", num_classes=2)


def test_pytorch_fcn_from_pth_equals_the_npz(tmp_path):
    """pytorch-fcn's FCN8s straight from a .pth (legacy format) gives the .npz fixture's logits."""
    with np.load(os.path.join(FIXTURES, "torch_fcn8s_state.npz")) as data:
        state = {key: data[key] for key in data.files}
    with np.load(os.path.join(FIXTURES, "torch_fcn_logits.npz")) as data:
        image_bgr, expected = data["input_bgr"].transpose(0, 2, 3, 1), data["fcn8s"].transpose(0, 2, 3, 1)
    path = save_state_dict(tmp_path / "fcn8s.pth", state, legacy=True, wrap="model_state_dict")
    model = fcn_tf.from_pytorch(path, "fcn8s", num_classes=3)  # width read from conv1_1
    logits = np.asarray(model(image_bgr[..., ::-1], training=False))
    assert np.abs(logits - expected).max() <= 1e-5 * np.abs(expected).max()
