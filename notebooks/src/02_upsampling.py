# %% [markdown]
# # 2. Upsampling: nearest, bilinear, and a learnt transposed convolution
#
# A segmentation network computes class scores on a coarse grid (stride 8, 16
# or 32) and has to bring them back to the input's pixels. Three choices:
#
# 1. **nearest neighbour**: copy each score into an `s x s` block;
# 2. **bilinear**: interpolate between the four nearest scores;
# 3. **a transposed convolution initialised to bilinear and then learnt**, as
#    FCN does (Long et al., 2015, Sec. 3.3): it starts as (2) and training may
#    sharpen it.
#
# We look at the numbers on a 2x2 example, then at what each produces on a
# real mask of the built-in shapes dataset, downsampled 8x and brought back.

# %%
import matplotlib.pyplot as plt
import numpy as np
import keras

from fcn_tf.data.builtin import CLASS_NAMES, render_example
from fcn_tf.data.palette import default_colors
from fcn_tf.layers import BilinearUpsampling, bilinear_kernel, resize_images
from fcn_tf.metrics import confusion_matrix, scores_from_confusion
from fcn_tf.visualize import colorize

keras.utils.set_random_seed(0)
np.set_printoptions(precision=3, suppress=True)


def as_batch(a):
    """[H, W] -> [1, H, W, 1] float32."""
    return np.asarray(a, np.float32)[None, :, :, None]


# %% [markdown]
# ## Nearest neighbour: 2x2 → 4x4 by copying
#
# Each value becomes a 2x2 block. `keras.layers.UpSampling2D` does exactly
# this, and so does a stride-2 transposed convolution whose 2x2 kernel is all
# ones: every input pixel pastes `1·value` onto its own 2x2 block and the
# blocks do not overlap (notebook 1: the transposed convolution pastes scaled
# kernel copies `s` pixels apart).

# %%
small = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
nearest = np.asarray(keras.layers.UpSampling2D(2, interpolation="nearest")(as_batch(small)))[0, :, :, 0]
print(nearest)
assert np.array_equal(nearest, np.repeat(np.repeat(small, 2, axis=0), 2, axis=1))

copy_deconv = keras.layers.Conv2DTranspose(1, 2, strides=2, use_bias=False, kernel_initializer="ones")
assert np.array_equal(np.asarray(copy_deconv(as_batch(small)))[0, :, :, 0], nearest)

# %% [markdown]
# ## Bilinear
#
# With half-pixel centres (TensorFlow's `tf.image.resize`, used by
# `fcn_tf.layers.resize_images`), output pixel `k` of a 2x upsampling sits at
# input coordinate `(k + 0.5)/2 − 0.5`: −0.25, 0.25, 0.75, 1.25. Clamped at the
# border, the first row `[1, 2]` becomes
# `[1, 0.75·1 + 0.25·2, 0.25·1 + 0.75·2, 2] = [1, 1.25, 1.75, 2]`.

# %%
bilinear = np.asarray(resize_images(as_batch(small), (4, 4), "bilinear"))[0, :, :, 0]
print(bilinear)
assert np.allclose(bilinear[0], [1, 1.25, 1.75, 2])

# %% [markdown]
# ## Bilinear as a transposed convolution (FCN's `upscore` layers)
#
# FCN upsamples by `s` with a transposed convolution of kernel size `2s` and
# stride `s`, initialised by `BilinearUpsampling` to the separable tent
# `1 − |t − c|/s` (`c` = kernel centre). For `s = 2` the 1-D kernel is
# `[1, 3, 3, 1]/4`. A 2x2 input gives `(2 − 1)·2 + 4 = 6` pixels; cropping
# `s/2 = 1` at the start leaves 4. Inside, this is exactly bilinear
# interpolation. At the border the transposed convolution sees zeros beyond
# the input (`0.75·1 = 0.75` instead of 1), where `resize` clamps: FCN's crop
# offsets (notebook 4) make sure those border pixels fall outside the image.

# %%
deconv = keras.layers.Conv2DTranspose(1, 4, strides=2, use_bias=False,
                                      kernel_initializer=BilinearUpsampling())
full = np.asarray(deconv(as_batch(small)))[0, :, :, 0]
print("1-D kernel:", np.asarray(deconv.kernel)[:, :, 0, 0].sum(axis=0) / 2)
assert full.shape == (6, 6)
cropped = full[1:5, 1:5]
print(cropped)
assert np.allclose(np.asarray(deconv.kernel)[:, :, 0, 0], np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 16)
assert np.allclose(cropped[1:3, 1:3], bilinear[1:3, 1:3])  # the interior
assert np.isclose(cropped[0, 0], 0.75 * 0.75 * 1.0)  # the corner sees zero padding

# %% [markdown]
# ## On a real mask
#
# Take masks of the built-in shapes dataset (5 classes, 128x128), turn each into
# one-hot scores and average them over 8x8 blocks: a 16x16 map of class
# probabilities `p`, what a stride-8 network would ideally predict. The coarse
# *scores* are `log(p + 0.001)`; each method upsamples them 8x and we take the
# argmax.
#
# - nearest: blocky, every boundary snaps to the 8-pixel grid;
# - bilinear: smooth boundaries;
# - transposed convolution, bilinear initialisation (kernel 16, stride 8, crop
#   `s/2 = 4`): the same as bilinear away from the border;
# - the same layer after training on 64 masks: its 16x16x5x5 kernel can mix
#   classes and sharpen the tent.

# %%
STRIDE, NUM_CLASSES = 8, len(CLASS_NAMES)


def coarse_scores(masks):
    """Masks [N, H, W] -> log of the class frequencies in each 8x8 block, [N, H/8, W/8, C]."""
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[masks]
    n, h, w, c = onehot.shape
    p = onehot.reshape(n, h // STRIDE, STRIDE, w // STRIDE, STRIDE, c).mean(axis=(2, 4))
    return np.log(p + 1e-3)


train_images, train_masks = map(np.stack, zip(*[render_example(seed) for seed in range(64)]))
test_images, test_masks = map(np.stack, zip(*[render_example(seed) for seed in range(5000, 5016)]))
train_scores, test_scores = coarse_scores(train_masks), coarse_scores(test_masks)
print("masks", train_masks.shape, "-> coarse scores", train_scores.shape)
assert train_scores.shape == (64, 16, 16, NUM_CLASSES)


def fcn_upsampler():
    """Kernel 2s, stride s, bilinear initialisation, crop s/2: FCN's upsampling."""
    scores = keras.Input((None, None, NUM_CLASSES))
    x = keras.layers.Conv2DTranspose(NUM_CLASSES, 2 * STRIDE, strides=STRIDE, use_bias=False,
                                     kernel_initializer=BilinearUpsampling(), name="upscore")(scores)
    x = keras.layers.Cropping2D(STRIDE // 2)(x)
    return keras.Model(scores, x)


upsampler = fcn_upsampler()
assert np.allclose(np.asarray(upsampler.get_layer("upscore").kernel),
                   bilinear_kernel(2 * STRIDE, NUM_CLASSES, NUM_CLASSES))
size = test_masks.shape[1:]
methods = {
    "nearest": np.asarray(keras.layers.UpSampling2D(STRIDE)(test_scores)),
    "bilinear": np.asarray(resize_images(test_scores, size, "bilinear")),
    "deconv, bilinear init": np.asarray(upsampler(test_scores)),
}
assert methods["deconv, bilinear init"].shape == (16, 128, 128, NUM_CLASSES)
# Away from the 4-pixel border the bilinear-initialised deconvolution is bilinear resizing.
assert np.allclose(methods["deconv, bilinear init"][:, 4:-4, 4:-4],
                   methods["bilinear"][:, 4:-4, 4:-4], atol=1e-4)

# %% [markdown]
# ## Learning the upsampling
#
# Now train the transposed convolution (6,400 weights) with per-pixel cross
# entropy against the full-resolution masks, starting from the bilinear kernel.

# %%
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
initial_loss = float(loss_fn(test_masks, methods["deconv, bilinear init"]))
upsampler.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss_fn)
history = upsampler.fit(train_scores, train_masks, batch_size=16, epochs=40, verbose=0)
methods["deconv, learnt"] = np.asarray(upsampler(test_scores))
learnt_loss = float(loss_fn(test_masks, methods["deconv, learnt"]))
print(f"held-out cross entropy: bilinear init {initial_loss:.3f} -> learnt {learnt_loss:.3f}")
assert learnt_loss < initial_loss

plt.figure(figsize=(5, 3))
plt.plot(history.history["loss"])
plt.xlabel("epoch")
plt.ylabel("training cross entropy")
plt.title("learning the upsampling kernel")
plt.show()

# %% [markdown]
# The scores of each method on the 16 held-out masks (the FCN paper's metrics,
# `fcn_tf.metrics`):

# %%
results = {}
for name, logits in methods.items():
    cm = confusion_matrix(test_masks, logits.argmax(-1), NUM_CLASSES)
    results[name] = scores_from_confusion(cm, list(CLASS_NAMES))
    print(f"{name:24s} pixel accuracy {results[name]['pixel_accuracy']:.4f}   "
          f"mean IoU {results[name]['mean_iou']:.4f}")
assert results["bilinear"]["mean_iou"] > results["nearest"]["mean_iou"]
assert results["deconv, learnt"]["pixel_accuracy"] > 0.9

# %%
colors = default_colors(NUM_CLASSES)
rows = 3
fig, axes = plt.subplots(rows, 2 + len(methods), figsize=(2.2 * (2 + len(methods)), 2.3 * rows))
for row in range(rows):
    panels = [("image", test_images[row]), ("ground truth", colorize(test_masks[row], colors))]
    panels += [(name, colorize(logits[row].argmax(-1), colors)) for name, logits in methods.items()]
    for ax, (title, panel) in zip(axes[row], panels):
        ax.imshow(panel)
        ax.set_axis_off()
        if row == 0:
            ax.set_title(title, fontsize=9)
fig.tight_layout()
plt.show()

# %%
learnt = np.asarray(upsampler.get_layer("upscore").kernel)
fig, axes = plt.subplots(1, 2, figsize=(7, 3))
axes[0].imshow(bilinear_kernel(2 * STRIDE, 1, 1)[:, :, 0, 0], cmap="viridis")
axes[0].set_title("bilinear initialisation")
axes[1].imshow(learnt[:, :, 1, 1], cmap="viridis")
axes[1].set_title(f"learnt, {CLASS_NAMES[1]} → {CLASS_NAMES[1]}")
for ax in axes:
    ax.set_axis_off()
plt.show()

# %% [markdown]
# Nearest neighbour puts every boundary on the 8-pixel grid; bilinear
# interpolation and its transposed-convolution twin follow the shapes' outlines
# far better. Training the kernel lowers the cross entropy mainly by making
# the upsampled scores more confident; it can also learn class-specific
# corrections because the kernel connects every class to every class. In the
# FCN paper the intermediate 2x upsamplings (`upscore2`, `upscore_pool4`) are
# initialised to bilinear and learnt with the rest of the network, and the
# final one is kept at bilinear; in `fcn_tf` all of them start bilinear and
# are trainable.
