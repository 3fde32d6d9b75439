# %% [markdown]
# # 3. Dilated (atrous) convolution
#
# A dilated convolution spaces its kernel taps `d` pixels apart (`d` is the
# dilation rate, "atrous" = "with holes"). A 3x3 kernel with `d = 2` covers 5x5
# pixels with the same 9 weights. DeepLab uses this to stop downsampling
# without shrinking the receptive field: the last stages of the backbone trade
# their stride for dilation (Chen et al., *Rethinking Atrous Convolution*,
# 2017; *DeepLabV3+*, 2018).
#
# This notebook checks: the footprint and parameter count against the rate,
# the receptive field of stacked dilated layers, the output-size formula, and
# what output stride 16 vs 8 means in this package's MobileNetV2 backbone and
# DeepLabV3+ head.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import keras
import tensorflow as tf

import fcn_tf
from fcn_tf.backbones import get_backbone


def conv(dilation, kernel_size=3, **kw):
    """A single-channel convolution with all weights 1 (so its footprint is visible)."""
    return keras.layers.Conv2D(1, kernel_size, dilation_rate=dilation, use_bias=False,
                               kernel_initializer="ones", **kw)


# %% [markdown]
# ## Footprint grows, parameters do not
#
# A `k x k` kernel with rate `d` has its taps at offsets `0, d, 2d, …, (k−1)d`, so
# it spans
#
# $$k_\text{eff} = k + (k − 1)(d − 1) = d(k − 1) + 1$$
#
# pixels: 3, 5, 9, 17 for `d = 1, 2, 4, 8`, always with `k² = 9` weights. The
# footprint is measured by convolving an impulse (a single 1 in a 21x21 zero
# image): the response lights up exactly the taps.

# %%
rates = (1, 2, 4, 8)
impulse = np.zeros((1, 21, 21, 1), np.float32)
impulse[0, 10, 10, 0] = 1.0
fig, axes = plt.subplots(1, len(rates), figsize=(3 * len(rates), 3))
for ax, d in zip(axes, rates):
    layer = conv(d, padding="same")
    response = np.asarray(layer(impulse))[0, :, :, 0]
    rows, cols = np.nonzero(response)
    extent = rows.max() - rows.min() + 1
    assert extent == d * (3 - 1) + 1 and len(rows) == 9
    assert layer.count_params() == 9
    ax.imshow(response, cmap="Greys")
    ax.set_title(f"d = {d}: {extent}x{extent} span, {layer.count_params()} weights")
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown]
# ## Stacking: exponential receptive field growth
#
# For stride-1 layers the receptive field adds up: `r = 1 + Σ (k_eff,i − 1)`.
# Three 3x3 layers have `r = 1 + 2 + 2 + 2 = 7`; with rates 1, 2, 4 it is
# `1 + 2 + 4 + 8 = 15`, and with rates `1, 2, …, 2^(L−1)` it is `2^(L+1) − 1`
# (Yu & Koltun, 2016), for the same `9L` weights. We measure it as the set of
# input pixels that the centre output depends on (the non-zero gradient).

# %%
def receptive_field(dilations, size=65):
    stack = keras.Sequential([keras.Input((size, size, 1))] + [conv(d, padding="same") for d in dilations])
    x = tf.Variable(tf.ones((1, size, size, 1)))
    with tf.GradientTape() as tape:
        centre = stack(x)[0, size // 2, size // 2, 0]
    rows, _ = np.nonzero(tape.gradient(centre, x).numpy()[0, :, :, 0])
    return rows.max() - rows.min() + 1, stack.count_params()


print(" L   rates              r (measured)  r (formula)  weights   r with d=1")
for depth in range(1, 6):
    dilations = [2**i for i in range(depth)]
    r, params = receptive_field(dilations)
    r_plain, params_plain = receptive_field([1] * depth)
    print(f" {depth}   {str(dilations):18s} {r:12d} {2 ** (depth + 1) - 1:12d} {params:8d} {r_plain:12d}")
    assert r == 2 ** (depth + 1) - 1 and r_plain == 2 * depth + 1
    assert params == params_plain == 9 * depth

# %% [markdown]
# ## The output-size formula
#
# With input size `i`, kernel `k`, stride `s`, dilation `d` and `p` zeros of
# padding on each side,
#
# $$o = \left\lfloor \frac{i + 2p − d(k − 1) − 1}{s} \right\rfloor + 1 .$$
#
# `padding="valid"` is `p = 0`: a 3x3, `d = 4` kernel on a 32-pixel input gives
# `32 − 8 = 24`. `padding="same"` pads `d(k − 1)/2` (here `d`) on each side so
# that `o = ⌈i/s⌉`: dilation never changes the size of a "same" layer. Keras
# agrees on every case below (Keras rejects stride > 1 together with
# dilation > 1, and so does DeepLab: a layer either downsamples or dilates).

# %%
def output_size(i, k, s=1, d=1, p=0):
    return (i + 2 * p - d * (k - 1) - 1) // s + 1


cases = [(32, 3, 1, 1), (32, 3, 1, 2), (32, 3, 1, 4), (32, 3, 1, 8), (33, 3, 1, 6),
         (32, 3, 2, 1), (33, 3, 2, 1), (32, 7, 1, 1), (65, 3, 1, 12), (17, 5, 1, 3)]
for i, k, s, d in cases:
    for padding, p in (("valid", 0), ("same", d * (k - 1) // 2)):
        layer = keras.layers.Conv2D(1, k, strides=s, dilation_rate=d, padding=padding)
        keras_size = layer.compute_output_shape((None, i, i, 1))[1]
        assert keras_size == output_size(i, k, s, d, p), (i, k, s, d, padding)
        if padding == "same":
            assert keras_size == math.ceil(i / s)
    print(f"i={i:3d} k={k} s={s} d={d:2d}: valid -> {output_size(i, k, s, d):3d}, "
          f"same -> {output_size(i, k, s, d, d * (k - 1) // 2):3d}")
assert output_size(32, 3, d=4) == 24

# %% [markdown]
# ## Stride for dilation in the MobileNetV2 backbone
#
# MobileNetV2 halves the resolution five times (output stride 32). DeepLab
# wants denser features, so `fcn_tf.backbones.get_backbone("mobilenet_v2")(inputs,
# output_stride=OS)` removes the strides beyond `OS` and dilates every later
# depthwise 3x3 by the removed factor (the TF-slim rule, `DilationTracker`: the
# layer whose stride is removed keeps the current rate, the layers after it
# multiply it).
#
# For a 512x512 input:
#
# | output stride | P4 | P5 (ASPP input) | stride-2 blocks (after the stride-2 stem `Conv1`) | dilated blocks |
# |---|---|---|---|---|
# | 32 | 32x32 | 16x16 | 1, 3, 6, 13 | none |
# | 16 | 32x32 | 32x32 | 1, 3, 6 | 14–16 at rate 2 |
# | 8  | 64x64 | 64x64 | 1, 3 | 7–13 at rate 2, 14–16 at rate 4 |
#
# The weights are the same (same parameter count, ImageNet weights load into
# any output stride), and so is the receptive field: a layer that lost a
# factor 2 of input stride gets a factor 2 of dilation, so each layer's span in
# *input pixels* is unchanged. What changes is the number of positions each
# later layer is evaluated at, hence the compute.

# %%
def backbone_model(output_stride, size=512):
    inputs = keras.Input((size, size, 3))
    features = get_backbone("mobilenet_v2")(inputs, output_stride=output_stride)
    return keras.Model(inputs, dict(features)), features


def layer_table(model):
    """(name, stride, dilation) of every depthwise 3x3 that downsamples or dilates."""
    return [(l.name, l.strides[0], l.dilation_rate[0]) for l in model.layers
            if isinstance(l, keras.layers.DepthwiseConv2D) and (l.strides[0] > 1 or l.dilation_rate[0] > 1)]


def receptive_field_in_pixels(model):
    """Receptive field of the last layer: r += (k_eff - 1) * jump; jump *= stride."""
    r, jump = 1, 1
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            k, s, d = layer.kernel_size[0], layer.strides[0], layer.dilation_rate[0]
            r += d * (k - 1) * jump
            jump *= s
    return r, jump


def multiply_adds(model):
    """Multiply-adds of the convolutions (BatchNorm and ReLU left out)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * np.prod(layer.kernel_size)
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * np.prod(layer.kernel_size) * layer.input.shape[-1]
    return total


summary = {}
for output_stride in (None, 16, 8):
    model, features = backbone_model(output_stride)
    rf, jump = receptive_field_in_pixels(model)
    summary[output_stride or 32] = {
        "strides": features.strides, "P5": tuple(features["P5"].shape[1:3]),
        "params": model.count_params(), "rf": rf, "jump": jump,
        "gmacs": multiply_adds(model) / 1e9, "table": layer_table(model),
    }
for os_, row in summary.items():
    print(f"output stride {os_:2d}: P5 {row['P5']}, strides {row['strides']}, params {row['params']:,}, "
          f"receptive field {row['rf']} px, {row['gmacs']:.2f} G multiply-adds")
    print("    ", ", ".join(f"{name.replace('_depthwise', '')} s{s} d{d}" for name, s, d in row["table"]))

assert summary[16]["strides"]["P5"] == 16 and summary[8]["strides"]["P5"] == 8
assert summary[32]["P5"] == (16, 16) and summary[16]["P5"] == (32, 32) and summary[8]["P5"] == (64, 64)
assert summary[16]["jump"] == 16 and summary[8]["jump"] == 8
assert len({row["params"] for row in summary.values()}) == 1  # the same weights
assert len({row["rf"] for row in summary.values()}) == 1  # the same receptive field
assert ("block_14_depthwise", 1, 2) in summary[16]["table"]
assert ("block_14_depthwise", 1, 4) in summary[8]["table"]
assert summary[32]["rf"] == 491 and summary[32]["params"] == 1_843_264
assert [round(row["gmacs"], 2) for row in summary.values()] == [1.46, 2.38, 7.67]

# %% [markdown]
# The run above gives, for 512x512: 1,843,264 parameters and a 491-pixel
# receptive field at every output stride, and 1.46, 2.38 and 7.67 G
# multiply-adds at output stride 32, 16 and 8. Output stride 8 costs about 3x
# output stride 16 in the backbone alone (and 4x in ASPP, whose input has 4x
# the positions); DeepLab trains at 16 and may evaluate at 8.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
labels = [f"OS {os_}" for os_ in summary]
axes[0].bar(labels, [row["P5"][0] for row in summary.values()], color="tab:blue")
axes[0].set_title("P5 size for a 512x512 input")
axes[1].bar(labels, [row["gmacs"] for row in summary.values()], color="tab:orange")
axes[1].set_title("backbone multiply-adds (G)")
plt.show()

# %% [markdown]
# ## ASPP rates follow the output stride
#
# DeepLabV3+'s ASPP (`fcn_tf.models.aspp`) runs 3x3 convolutions at rates
# 6, 12, 18 on stride-16 features, and at 12, 24, 36 on stride-8 features
# (layers `aspp_rate6` … `aspp_rate36`). In input pixels a tap spacing of `d`
# features is `d·OS` pixels: 96, 192 and 288 at both output strides, so the
# branches see the same context either way.
#
# Large rates on small maps degenerate: on a 32x32 map a rate-18 kernel has most
# of its outer taps in the zero padding. Per axis, a tap at offset `±d` is
# inside for `32 − d` of the 32 positions, so the fraction of the 9 taps that
# see real features is `((32 + 2(32 − d))/96)²`: 0.77 for `d = 6`, 0.39 for
# `d = 18`. That is why ASPP adds an image-pooling branch for global context.

# %%
deeplab = {os_: fcn_tf.build_model("deeplabv3plus", num_classes=5, output_stride=os_) for os_ in (16, 8)}
aspp_rates = {
    os_: [m.get_layer(name).dilation_rate[0] for name in (l.name for l in m.layers)
          if name.startswith("aspp_rate") and not name.endswith(("_bn", "_relu"))]
    for os_, m in deeplab.items()
}
print(aspp_rates)
assert aspp_rates == {16: [6, 12, 18], 8: [12, 24, 36]}
assert [r * 16 for r in aspp_rates[16]] == [r * 8 for r in aspp_rates[8]] == [96, 192, 288]
assert deeplab[16].count_params() == deeplab[8].count_params()


def valid_tap_fraction(size, d):
    per_axis = (size + 2 * max(size - d, 0)) / (3 * size)
    return per_axis**2


for d in aspp_rates[16]:
    print(f"rate {d:2d} on a 32x32 map: {valid_tap_fraction(32, d):.2f} of the taps inside")
assert round(valid_tap_fraction(32, 6), 2) == 0.77 and round(valid_tap_fraction(32, 18), 2) == 0.39

image = np.random.default_rng(0).normal(size=(1, 96, 128, 3)).astype(np.float32)
for os_, m in deeplab.items():
    assert m(image).shape == (1, 96, 128, 5)  # the same output at either output stride
