# %% [markdown]
# # 1. Transposed convolution is the transpose of the convolution matrix
#
# FCN upsamples its coarse class scores with *transposed convolutions*
# (`upscore2`, `upscore8` ... in `fcn_tf.models.fcn`). The name says exactly
# what the layer computes: a convolution is a linear map, so it is a matrix
# `C`, and the transposed convolution is the map `Cᵀ`. This notebook builds
# `C` by hand and checks both directions against Keras' `Conv2D` and
# `Conv2DTranspose`, for stride 1 and stride 2 (Dumoulin & Visin, *A guide to
# convolution arithmetic for deep learning*, 2016).
#
# Everything is a single channel and has no bias, so the layers are purely linear.

# %%
import matplotlib.pyplot as plt
import numpy as np
import keras

import fcn_tf
from fcn_tf.layers import bilinear_kernel

np.set_printoptions(linewidth=120)


def conv2d(x, kernel, stride):
    """Keras' Conv2D (valid padding, no bias) on one single-channel image."""
    layer = keras.layers.Conv2D(1, kernel.shape[0], strides=stride, use_bias=False)
    layer.build((None, *x.shape, 1))
    layer.set_weights([kernel[:, :, None, None]])
    return np.asarray(layer(x[None, :, :, None]))[0, :, :, 0]


def conv2d_transpose(y, kernel, stride, output_padding=None):
    """Keras' Conv2DTranspose (valid padding, no bias) with the same kernel."""
    layer = keras.layers.Conv2DTranspose(
        1, kernel.shape[0], strides=stride, use_bias=False, output_padding=output_padding
    )
    layer.build((None, *y.shape, 1))
    layer.set_weights([kernel[:, :, None, None]])
    return np.asarray(layer(y[None, :, :, None]))[0, :, :, 0]


# %% [markdown]
# ## Stride 1: a 4x4 input, a 3x3 kernel, a 2x2 output
#
# With input size `i`, kernel `k`, stride `s` and no padding the output size is
#
# $$o = \left\lfloor \frac{i - k}{s} \right\rfloor + 1, \qquad i=4,\ k=3,\ s=1 \ \Rightarrow\ o = 2.$$
#
# Flatten the input row by row into a vector `x` of 16 numbers and the output
# into 4 numbers. Output pixel `(r, c)` is the sum of the kernel times the 3x3
# window whose top-left corner is input pixel `(s·r, s·c)`, so row `2r + c` of
# `C` holds the 9 kernel weights at the columns of that window and zeros
# elsewhere: `C` is 4x16 and has 9 non-zeros per row. (Keras' `Conv2D`, like
# every deep-learning "convolution", is a cross-correlation: the kernel is not
# flipped.)

# %%
def conv_matrix(kernel, in_size, stride):
    """The (o*o, i*i) matrix C with flatten(conv(x)) = C @ flatten(x)."""
    k = kernel.shape[0]
    out_size = (in_size - k) // stride + 1
    C = np.zeros((out_size * out_size, in_size * in_size), np.float32)
    for r in range(out_size):
        for c in range(out_size):
            for u in range(k):
                for v in range(k):
                    C[r * out_size + c, (stride * r + u) * in_size + (stride * c + v)] = kernel[u, v]
    return C


x = np.arange(16, dtype=np.float32).reshape(4, 4)
w = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
C = conv_matrix(w, in_size=4, stride=1)
print("C has shape", C.shape)
print(C.astype(int))

# %% [markdown]
# The first row is the kernel's rows `1 2 3`, `4 5 6`, `7 8 9` laid out with a
# gap of one (the input row is 4 wide, the kernel 3). The check: `C·x` reshaped
# to 2x2 is Keras' convolution. For example the top-left output is
# `1·0 + 2·1 + 3·2 + 4·4 + 5·5 + 6·6 + 7·8 + 8·9 + 9·10 = 303`.

# %%
y_matrix = (C @ x.ravel()).reshape(2, 2)
y_keras = conv2d(x, w, stride=1)
print("C·x =\n", y_matrix, "\nConv2D =\n", y_keras)
assert y_matrix[0, 0] == 303
assert np.allclose(y_matrix, y_keras)

# %% [markdown]
# ## Going back: `Cᵀ` maps 2x2 to 4x4
#
# `Cᵀ` is 16x4: it takes any 2x2 map `y` to a 4x4 map. Column `2r + c` of `Cᵀ`
# is the kernel pasted at the window of output `(r, c)`, so `Cᵀ·y` is a sum of
# four kernel copies, each scaled by one value of `y` and shifted by the
# stride. That is what `Conv2DTranspose` computes with the same kernel, and it
# is also the gradient of the convolution with respect to its input (which is
# how TensorFlow implements it).

# %%
y = np.array([[1.0, -1.0], [2.0, 0.5]], np.float32)
back_matrix = (C.T @ y.ravel()).reshape(4, 4)
back_keras = conv2d_transpose(y, w, stride=1)
print("Cᵀ·y =\n", back_matrix, "\nConv2DTranspose =\n", back_keras)
assert back_keras.shape == (4, 4)
assert np.allclose(back_matrix, back_keras)

# %% [markdown]
# The transpose is **not** the inverse: `Cᵀ·C·x ≠ x` (`C` has rank 4, it cannot be
# undone on 16 numbers). What holds is the adjoint identity
# `⟨C·x, y⟩ = ⟨x, Cᵀ·y⟩`: a transposed convolution restores the *shape* and the
# *connectivity pattern* of the input, not its values. That is why FCN learns
# (or bilinearly initialises) its upsampling kernels rather than "undoing" a
# convolution.

# %%
assert not np.allclose((C.T @ C @ x.ravel()).reshape(4, 4), x)
assert np.isclose((C @ x.ravel()) @ y.ravel(), x.ravel() @ (C.T @ y.ravel()))
print("rank of C:", np.linalg.matrix_rank(C))

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), gridspec_kw={"width_ratios": [1, 4, 0.6, 1]})
axes[0].imshow(x, cmap="viridis")
axes[0].set_title("x (4x4)")
axes[1].imshow(C, cmap="magma")
axes[1].set_title("C (4x16): one row per output pixel")
axes[2].imshow(y, cmap="coolwarm")
axes[2].set_title("y (2x2)")
axes[3].imshow(back_keras, cmap="coolwarm")
axes[3].set_title("Cᵀ·y (4x4)")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown]
# ## Stride 2
#
# With stride 2 a 4x4 input and a 3x3 kernel give `⌊(4 − 3)/2⌋ + 1 = 1` pixel,
# so take a 5x5 input: `⌊(5 − 3)/2⌋ + 1 = 2`. `C` is now 4x25 and the windows
# of neighbouring outputs start two columns apart. The transposed convolution
# of a 2x2 map has size `(o − 1)·s + k = 1·2 + 3 = 5`.

# %%
x5 = np.arange(25, dtype=np.float32).reshape(5, 5)
C2 = conv_matrix(w, in_size=5, stride=2)
print("C has shape", C2.shape)
assert C2.shape == (4, 25)
assert np.allclose((C2 @ x5.ravel()).reshape(2, 2), conv2d(x5, w, stride=2))

back2_matrix = (C2.T @ y.ravel()).reshape(5, 5)
back2_keras = conv2d_transpose(y, w, stride=2)
print("Cᵀ·y =\n", back2_matrix)
assert back2_keras.shape == (5, 5)
assert np.allclose(back2_matrix, back2_keras)

# %% [markdown]
# **Which input size?** The floor in the size formula loses information:
# 5x5 and 6x6 inputs both give 2x2 outputs with stride 2. For a 6x6 input the
# matrix is 4x36 and `Cᵀ·y` is 6x6, whose last row and column are zero (no
# window reaches them). Keras' `output_padding=1` asks for that larger size.

# %%
C6 = conv_matrix(w, in_size=6, stride=2)
assert C6.shape == (4, 36)
back6_keras = conv2d_transpose(y, w, stride=2, output_padding=1)
assert back6_keras.shape == (6, 6)
assert np.allclose((C6.T @ y.ravel()).reshape(6, 6), back6_keras)
assert np.all(back6_keras[-1] == 0) and np.all(back6_keras[:, -1] == 0)

# %% [markdown]
# **Zeros in between.** A stride-2 transposed convolution is also an ordinary
# stride-1 convolution: insert `s − 1 = 1` zero between the input pixels
# (2x2 → 3x3), pad by `k − 1 = 2` on every side (→ 7x7) and convolve with the
# kernel rotated by 180°: `(7 − 3)/1 + 1 = 5`. This is why it is sometimes
# called a "fractionally strided" convolution.

# %%
dilated = np.zeros((3, 3), np.float32)
dilated[::2, ::2] = y
padded = np.pad(dilated, 2)
assert np.allclose(conv2d(padded, w[::-1, ::-1], stride=1), back2_keras)

fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), gridspec_kw={"width_ratios": [5, 1.4, 1.4]})
axes[0].imshow(C2, cmap="magma")
axes[0].set_title("C (4x25), stride 2")
axes[1].imshow(padded, cmap="coolwarm")
axes[1].set_title("y with zeros, padded")
axes[2].imshow(back2_keras, cmap="coolwarm")
axes[2].set_title("Cᵀ·y (5x5)")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown]
# ## The same in this package's FCN
#
# FCN-8s' `upscore2` is a bias-free `Conv2DTranspose` with a 4x4 kernel and
# stride 2, initialised by `fcn_tf.layers.BilinearUpsampling` to the bilinear
# filter `[1, 3, 3, 1]/4 ⊗ [1, 3, 3, 1]/4` on each class channel. Take the
# layer out of a (tiny) FCN-8s and check it is `Cᵀ` of its own kernel on a 3x3
# map: output size `(3 − 1)·2 + 4 = 8`.

# %%
model = fcn_tf.build_model("fcn8s", num_classes=2, width_multiplier=1 / 16)
upscore2 = model.get_layer("upscore2")
kernel = np.asarray(upscore2.kernel)  # (4, 4, out, in)
print(upscore2.kernel_size, upscore2.strides, kernel.shape)
assert upscore2.kernel_size == (4, 4) and upscore2.strides == (2, 2)
assert np.allclose(kernel[:, :, 0, 0], np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 16)
assert np.allclose(kernel, bilinear_kernel(4, 2, 2))

scores = np.random.default_rng(0).normal(size=(1, 3, 3, 2)).astype(np.float32)
up = np.asarray(upscore2(scores))
C_up = conv_matrix(kernel[:, :, 0, 0], in_size=8, stride=2)
assert C_up.shape == (9, 64)
assert up.shape == (1, 8, 8, 2)
assert np.allclose((C_up.T @ scores[0, :, :, 0].ravel()).reshape(8, 8), up[0, :, :, 0], atol=1e-6)
print("upscore2 of a 3x3 score map = Cᵀ·y, with C the 9x64 matrix of its bilinear kernel")

# %% [markdown]
# Notebook 2 looks at what that bilinear initialisation produces on a real
# mask, and what changes once the kernel is learnt.
