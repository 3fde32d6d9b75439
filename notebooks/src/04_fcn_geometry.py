# %% [markdown]
# # 4. FCN geometry: the 100-pixel padding and the crop offsets 5, 9 and 31
#
# The reference FCN (Long, Shelhamer & Darrell, 2015; the Caffe and PyTorch
# releases) pads its input by 100 pixels in `conv1_1`, and FCN-8s crops its
# fused score maps at offsets 5 (`score_pool4c`), 9 (`score_pool3c`) and 31
# (`score`, back to the input). Neither number is tuned: both follow from the
# layer arithmetic. We derive them by hand, then check them against
# `fcn_tf.build_model("fcn8s", ...)` for several input sizes.
#
# The layers of FCN-8s on VGG16, as built by `fcn_tf`:
#
# | layers | kernel, stride | padding |
# |---|---|---|
# | `conv1_1` | 3, 1 | 100 (`conv1_1_pad`), then valid |
# | all other `convN_M` | 3, 1 | 1 (`same`) |
# | `pool1` … `pool5` | 2, 2 | rounds up (Caffe's ceil mode = `same` for 2x2/2) |
# | `fc6` | 7, 1 | none (valid) |
# | `fc7`, `score_fr`, `score_pool4`, `score_pool3` | 1, 1 | none |
# | `upscore2`, `upscore_pool4` | 4, 2 (transposed) | none |
# | `upscore8` | 16, 8 (transposed) | none |

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import keras

import fcn_tf
from fcn_tf.layers import CropLike

# %% [markdown]
# ## Sizes
#
# For an `H x H` input: `conv1_1` sees `H + 200` and its valid 3x3 leaves
# `H + 198`; the `same` convolutions keep sizes; each pool gives `⌈n/2⌉`; `fc6`
# (7x7 valid) gives `pool5 − 6`; a transposed convolution with kernel `k` and
# stride `s` gives `(n − 1)s + k`. For `H = 500` (the largest PASCAL VOC image):
#
# | layer | size |
# |---|---|
# | conv1_1 | 500 + 198 = 698 |
# | pool1 … pool5 | 349, 175, 88, 44, 22 |
# | fc6, score_fr | 22 − 6 = 16 |
# | upscore2 | 15·2 + 4 = 34 |
# | upscore_pool4 | 33·2 + 4 = 70 |
# | upscore8 | 69·8 + 16 = 568 |
#
# A crop at offset `c` needs the cropped map to have at least `c + (target size)`
# pixels: pool4 (44) ≥ 5 + 34, pool3 (88) ≥ 9 + 70, upscore8 (568) ≥ 31 + 500.

# %%
def fcn8s_sizes(h, pad=100):
    """Sizes of FCN-8s' maps for an h-pixel input side, from the layer arithmetic."""
    size = {"conv1_1": h + 2 * pad - 2}
    n = size["conv1_1"]
    for level in range(1, 6):
        n = math.ceil(n / 2)
        size[f"pool{level}"] = n
    size["fc6"] = size["pool5"] - 6
    size["upscore2"] = (size["fc6"] - 1) * 2 + 4
    size["upscore_pool4"] = (size["upscore2"] - 1) * 2 + 4
    size["upscore8"] = (size["upscore_pool4"] - 1) * 8 + 16
    return size


s500 = fcn8s_sizes(500)
print(s500)
assert [s500[f"pool{i}"] for i in range(1, 6)] == [349, 175, 88, 44, 22]
assert (s500["fc6"], s500["upscore2"], s500["upscore_pool4"], s500["upscore8"]) == (16, 34, 70, 568)

# %% [markdown]
# ## Where the offsets come from
#
# Track, for each map, which input pixel the centre of its pixel `y` sits on:
# `x = a·y + b` in input coordinates (Caffe's `coord_map`). Each layer maps
# its output index to its input index:
#
# - convolution or pooling with kernel `k`, stride `s` and `p` pixels of
#   padding before: `x = s·y + (k − 1)/2 − p`;
# - transposed convolution (kernel `k`, stride `s`): input pixel `x` is pasted
#   onto outputs `s·x … s·x + k − 1`, centred on `s·x + (k − 1)/2`, so
#   `x = (y − (k − 1)/2)/s`;
# - crop at offset `c`: `x = y + c`.
#
# Composing from the input:
#
# | map | step | centre of pixel `y`, in input pixels |
# |---|---|---|
# | conv1_1 | `y + 1 − 100` | `y − 99` |
# | pool1 | `2y + 0.5` | `2y − 98.5` |
# | pool2 | | `4y − 97.5` |
# | pool3 | | `8y − 95.5` |
# | pool4 | | `16y − 91.5` |
# | pool5 | | `32y − 83.5` |
# | fc6 … score_fr | `y + 3` | `32y + 12.5` |
# | upscore2 | `(y − 1.5)/2` | `16y − 11.5` |
# | score_pool4 cropped at `c` | `y + c` | `16y + 16c − 91.5` |
# | upscore_pool4 | `(y − 1.5)/2` | `8y − 23.5` |
# | score_pool3 cropped at `c` | `y + c` | `8y + 8c − 95.5` |
# | upscore8 | `(y − 7.5)/8` | `y − 31` |
# | score: upscore8 cropped at `c` | `y + c` | `y + c − 31` |
#
# The maps added together must agree pixel for pixel, and the output must sit
# on the input:
#
# - `fuse_pool4`: `16c − 91.5 = −11.5`  ⇒  **`c = 5`**
# - `fuse_pool3`: `8c − 95.5 = −23.5`  ⇒  **`c = 9`**
# - `score`: `c − 31 = 0`  ⇒  **`c = 31`**
#
# FCN-32s (`upscore`, kernel 64, stride 32 from `score_fr`) gets
# `32·(y − 31.5)/32 + 12.5 = y − 19`, offset 19; FCN-16s (`upscore16`, kernel
# 32, stride 16 from the pool4 fusion) `y − 15.5 − 11.5 = y − 27`, offset 27.
#
# The same walk, done by code over the layers of the package's model (reading
# each layer's kernel size, stride, padding and offset from the layer itself):

# %%
def parents(layer):
    inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    return [t._keras_history.operation.name for t in inputs]


def coordinate_maps(model):
    """For every layer: (a, b) with input pixel = a * y + b for output pixel y."""
    maps = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            maps[layer.name] = (1.0, 0.0)
            continue
        up = parents(layer)
        a, b = maps[up[0]]
        if isinstance(layer, keras.layers.ZeroPadding2D):
            step, shift = 1, -layer.padding[0][0]
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            k, s = layer.kernel_size[0], layer.strides[0]
            assert layer.padding == "valid"
            step, shift = 1 / s, -(k - 1) / 2 / s
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D)):
            k = (layer.kernel_size if hasattr(layer, "kernel_size") else layer.pool_size)[0]
            s = layer.strides[0]
            # "same" pads (k - 1) // 2 before for stride 1 (3x3 convs) and 0 before for k == s (pools).
            before = 0 if layer.padding == "valid" else ((k - 1) // 2 if s == 1 else max(k - s, 0) // 2)
            step, shift = s, (k - 1) / 2 - before
        elif isinstance(layer, CropLike):
            step, shift = 1, layer.offset[0]
        else:  # Dropout, Add, Activation: pixel for pixel
            step, shift = 1, 0
            for other in up[1:]:
                assert maps[other] == maps[up[0]], f"{layer.name} adds misaligned maps"
        maps[layer.name] = (a * step, a * shift + b)
    return maps


def aligning_offset(maps, source, reference):
    """The crop of `source` that puts it on `reference`'s pixels."""
    (a_s, b_s), (a_r, b_r) = maps[source], maps[reference]
    assert a_s == a_r
    return (b_r - b_s) / a_s


models = {v: fcn_tf.build_model(f"fcn{v}s", num_classes=3, width_multiplier=1 / 16) for v in (32, 16, 8)}
maps = coordinate_maps(models[8])
for name in ("conv1_1", "pool1", "pool3", "pool4", "pool5", "fc6", "upscore2", "upscore_pool4",
             "upscore8", "score"):
    a, b = maps[name]
    print(f"{name:14s} x = {a:g}·y {b:+g}")

# The offsets that align, derived from the layers without their crops ...
derived = {
    "score_pool4c": aligning_offset(maps, "score_pool4", "upscore2"),
    "score_pool3c": aligning_offset(maps, "score_pool3", "upscore_pool4"),
    "score": aligning_offset(maps, "upscore8", "image"),
}
print("derived:", derived)
assert derived == {"score_pool4c": 5, "score_pool3c": 9, "score": 31}
# ... are the ones the model crops with, and its output lands on the input.
for name, offset in derived.items():
    assert models[8].get_layer(name).offset == (offset, offset)
assert maps["logits"] == (1.0, 0.0)

final = {v: coordinate_maps(models[v]) for v in (32, 16)}
assert aligning_offset(final[32], "upscore", "image") == 19 == models[32].get_layer("score").offset[0]
assert aligning_offset(final[16], "upscore16", "image") == 27 == models[16].get_layer("score").offset[0]

# %% [markdown]
# ## Checked on the model for several input sizes
#
# The tiny FCN-8s (`width_multiplier=1/16`: 4 to 256 channels instead of 64 to
# 4096) has the full network's geometry. We read the size of every
# intermediate map for inputs from 1x1 to 500x500 (and non-square ones) and
# compare with the arithmetic above, including the slack each crop leaves.

# %%
names = ["conv1_1", "pool1", "pool2", "pool3", "pool4", "pool5", "fc6", "upscore2",
         "upscore_pool4", "upscore8", "logits"]
probe = keras.Model(models[8].input, [models[8].get_layer(n).output for n in names])
for h, w in [(1, 1), (32, 32), (100, 100), (224, 224), (375, 500), (500, 500), (17, 333)]:
    outputs = probe(np.zeros((1, h, w, 3), np.float32))
    measured = {n: tuple(o.shape[1:3]) for n, o in zip(names, outputs)}
    for axis, length in enumerate((h, w)):
        expected = fcn8s_sizes(length)
        for n in names[:-1]:
            assert measured[n][axis] == expected[n], (h, w, n)
        assert expected["pool4"] >= 5 + expected["upscore2"]
        assert expected["pool3"] >= 9 + expected["upscore_pool4"]
        assert expected["upscore8"] >= 31 + length
    assert measured["logits"] == (h, w)
    print(f"{h:3d}x{w:<3d}: pool5 {measured['pool5']}, fc6 {measured['fc6']}, "
          f"upscore8 {measured['upscore8']} -> logits {measured['logits']}")

# %% [markdown]
# ## Why 100 pixels of padding
#
# Without padding, `fc6`'s 7x7 valid window needs `pool5 ≥ 7`, i.e.
# `⌈(H − 2)/32⌉ ≥ 7`, `H ≥ 195`: smaller images could not be segmented at all.
# And the output would be smaller than the input: every valid convolution eats
# border pixels, and the pixels near the border have no score.
#
# With `p` pixels of padding the whole coordinate chain shifts by `100 − p`,
# so the final offset becomes `31 − (100 − p) = p − 69`, while 5 and 9 stay
# (both added maps shift alike). Three conditions must hold for every `H ≥ 1`:
#
# 1. `fc6` has at least one pixel: `⌈(H + 2p − 2)/32⌉ ≥ 7` for `H = 1` ⇒
#    `2p − 1 ≥ 193` ⇒ `p ≥ 97`;
# 2. the final crop starts inside `upscore8`: `p − 69 ≥ 0`;
# 3. `upscore8` is long enough: `upscore8 ≥ H + p − 69`, and the skip crops fit.
#
# So `p = 97` is the smallest padding that segments every size, and the
# reference's 100 is the round number above it (the FCN paper does not derive
# it). The scan below checks this for every `H` from 1 to 2000.

# %%
def works(h, pad):
    size = fcn8s_sizes(h, pad)
    offset = pad - 69
    return (size["fc6"] >= 1 and offset >= 0
            and size["pool4"] >= 5 + size["upscore2"]
            and size["pool3"] >= 9 + size["upscore_pool4"]
            and size["upscore8"] >= offset + h)


heights = np.arange(1, 2001)
failures = {pad: int(sum(not works(h, pad) for h in heights)) for pad in range(60, 106)}
smallest = min(pad for pad, n in failures.items() if n == 0 and all(failures[q] == 0 for q in range(pad, 106)))
print("input sizes in 1..2000 that fail, by padding:",
      {pad: failures[pad] for pad in (69, 80, 90, 95, 96, 97, 100)})
print("smallest padding that works for every size:", smallest)
assert smallest == 97 and failures[100] == 0 and failures[96] > 0

slack = [fcn8s_sizes(h)["upscore8"] - (h + 31) for h in heights]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].plot(list(failures), list(failures.values()), marker=".")
axes[0].axvline(100, color="grey", linestyle="--", label="reference: 100")
axes[0].set_xlabel("input padding p")
axes[0].set_ylabel("sizes in 1..2000 that fail")
axes[0].legend()
axes[1].plot(heights, slack)
axes[1].set_xlabel("input size H")
axes[1].set_ylabel("upscore8 − (H + 31)")
axes[1].set_title("pixels to spare after the final crop (p = 100)")
fig.tight_layout()
plt.show()
assert min(slack) >= 0
