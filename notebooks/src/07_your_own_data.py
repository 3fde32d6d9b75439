# %% [markdown]
# # 7. Your own data
#
# To train on your own images you need a folder of images, a folder of masks
# with the same file names, and a config file whose `"data"` section describes
# them (docs/DATA.md lists every key). Then:
#
# 1. run the verifier, `python -m fcn_tf.data verify CONFIG`, and fix what it reports;
# 2. look at the class frequencies and the median-frequency class weights;
# 3. train, `python -m fcn_tf.train CONFIG`.
#
# Here the "own data" is a small folder written from the built-in shapes
# generator, so the notebook runs anywhere; with real data only the paths and
# class names change.

# %%
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import cv2
import matplotlib.pyplot as plt
import numpy as np

from fcn_tf.config.run_config import load_config
from fcn_tf.data import (class_pixel_frequencies, format_report, load_data_config,
                         median_frequency_weights, verify)
from fcn_tf.data.builtin import render_example
from fcn_tf.training.trainer import train

def inline_figures():
    """fcn_tf's image writers (curves.png, predictions.png) switch matplotlib to Agg; switch back."""
    get_ipython().run_line_magic("matplotlib", "inline")  # i.e. %matplotlib inline


workdir = pathlib.Path(tempfile.mkdtemp(prefix="fcn_tf_own_data_"))
print("working in", workdir)

# %% [markdown]
# ## 1. A folder of images and masks
#
# The `folders` layout: `images/<split>/NAME.jpg|png` and `masks/<split>/NAME.png`,
# matched by file stem. Masks here are single-channel PNGs of class ids
# (`mask_encoding: "ids"`); palette PNGs, RGB colour codes and 0/255 binary
# masks are read too. We write 48 training and 16 validation pairs: photos as
# JPEG, masks as PNG (never store masks as JPEG: compression invents labels).

# %%
CLASS_NAMES = ["background", "circle", "square", "triangle", "cross"]
root = workdir / "my_shapes"
for split, seeds in {"train": range(100, 148), "val": range(900, 916)}.items():
    (root / "images" / split).mkdir(parents=True)
    (root / "masks" / split).mkdir(parents=True)
    for seed in seeds:
        image, mask = render_example(seed)
        cv2.imwrite(str(root / "images" / split / f"img_{seed:04d}.jpg"), image[..., ::-1])
        cv2.imwrite(str(root / "masks" / split / f"img_{seed:04d}.png"), mask)
print(sorted(os.listdir(root / "images" / "train"))[:3], "...")
print(sorted(os.listdir(root / "masks" / "train"))[:3], "...")

# %% [markdown]
# ## 2. The config
#
# Paths are relative to the config file. The `"data"` section says where the
# files are and what the classes are; the other sections say what to train.
# Comments (`//`) are allowed. A tiny U-Net keeps this notebook under a minute;
# `class_weights: "median_frequency"` weighs the loss by the class weights
# shown below.

# %%
config_text = """// My own data: folders layout, class-id masks.
{
  "model": {"name": "unet", "options": {"base_filters": 8, "depth": 3}},
  "data": {
    "format": "folders",
    "root": "my_shapes",
    "mask_encoding": "ids",
    "class_names": %s,
    "crop_size": [128, 128]
  },
  "train": {
    "epochs": 30,
    "batch_size": 8,
    "learning_rate": 0.003,
    "loss": {"class_weights": "median_frequency"}
  },
  "output": {"dir": "runs", "name": "my_shapes", "tensorboard": false, "sample_images": 3}
}
""" % json.dumps(CLASS_NAMES)
config_path = workdir / "my_config.json"
config_path.write_text(config_text)

# %% [markdown]
# ## 3. Verify
#
# The verifier decodes every file once and reports pairs per split, image
# sizes, per-class pixel frequencies and every problem, naming the files. Its
# exit status is 1 when there are problems, so scripts can stop early. To see
# it work, break the dataset twice: an image without a mask, and a mask with
# the value 7, which is not a class id (there are 5 classes) nor ignored.

# %%
image, mask = render_example(5)
cv2.imwrite(str(root / "images" / "train" / "orphan.jpg"), image[..., ::-1])
bad = mask.copy()
bad[:10, :10] = 7
cv2.imwrite(str(root / "masks" / "train" / "img_0100.png"), bad)

cli = subprocess.run([sys.executable, "-m", "fcn_tf.data", "verify", str(config_path)],
                     capture_output=True, text=True)
print(cli.stdout)
print("exit status:", cli.returncode)
assert cli.returncode == 1
assert "orphan" in cli.stdout and "img_0100.png" in cli.stdout

# %% [markdown]
# Fix both (remove the orphan, restore the mask) and verify again, this time
# through the library functions behind the command:

# %%
(root / "images" / "train" / "orphan.jpg").unlink()
cv2.imwrite(str(root / "masks" / "train" / "img_0100.png"), render_example(100)[1])

data_config = load_data_config(config_path)
report = verify(data_config)
print(format_report(report))
assert report.ok
assert report.splits["train"].count == 48 and report.splits["val"].count == 16

# %% [markdown]
# ## 4. Class frequencies and weights
#
# Background covers most pixels, so an unweighted loss is dominated by it.
# Median-frequency balancing (Eigen & Fergus, 2015) weighs class `c` by
# `median(freq) / freq(c)`, where `freq(c)` is the pixels of class `c` divided
# by the pixels of the images in which `c` appears. The median class gets
# weight 1, frequent classes less, rare ones more.

# %%
stats = class_pixel_frequencies(data_config, "train")
weights = median_frequency_weights(stats.counts, stats.image_pixels)
freq = stats.counts / stats.image_pixels
for name, share, f, w in zip(CLASS_NAMES, stats.frequencies, freq, weights):
    print(f"{name:12s} {100 * share:6.2f}% of pixels   freq {f:.4f}   weight {w:.3f}")

assert np.allclose(weights, np.median(freq) / freq)
assert np.isclose(np.sort(weights)[len(weights) // 2], 1.0)  # the median class
assert weights[0] == weights.min() and weights[0] < 0.2  # background
assert np.allclose(weights, report.weights)

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].bar(CLASS_NAMES, 100 * stats.frequencies, color="tab:blue")
axes[0].set_title("share of training pixels (%)")
axes[1].bar(CLASS_NAMES, weights, color="tab:orange")
axes[1].axhline(1.0, color="grey", linestyle="--")
axes[1].set_title("median-frequency weight")
for ax in axes:
    ax.tick_params(axis="x", rotation=30)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Train
#
# `python -m fcn_tf.train my_config.json --set train.epochs=4 --set
# train.jit_compile=false` does the same as the two lines below: the config
# asks for 30 epochs, the overrides cut this demonstration to 4 and skip the
# few timed steps with and without XLA that `jit_compile: auto` (the default)
# spends before a real run. The run
# folder holds the config, history.csv, curves.png, predictions.png,
# metrics.json and best.keras; running the same command again resumes an
# unfinished run.

# %%
os.chdir(workdir)
config = load_config(config_path, overrides=["train.epochs=4", "train.jit_compile=false"])
result = train(config, fresh=True, verbose=2)
inline_figures()
print(result.run_dir, "epochs:", result.epochs_completed, f"in {result.seconds:.0f} s")
assert result.epochs_completed == 4
assert pathlib.Path(result.run_dir).parent == workdir / "runs"
assert {"history.csv", "metrics.json", "best.keras", "predictions.png"} <= set(os.listdir(result.run_dir))

# %%
print(f"val mean IoU after 4 epochs: {result.metrics['mean_iou']:.3f}, "
      f"pixel accuracy {result.metrics['pixel_accuracy']:.3f}")
for row in result.metrics["per_class"]:
    print(f"  {row['class']:12s} IoU {row['iou'] if row['iou'] is None else round(row['iou'], 3)}")
plt.figure(figsize=(8, 6))
plt.imshow(plt.imread(os.path.join(result.run_dir, "predictions.png")))
plt.axis("off")
plt.show()

# %% [markdown]
# Four epochs on 48 images is only a smoke test that the data, the config and
# the training run fit together; the scores above are far from converged. With
# median-frequency weights the background (weight about 0.1) counts little, so
# early on the model over-predicts shapes and the pixel accuracy starts low.
# Notebook 5 trains longer on the built-in dataset. For real data, also think
# about: `image_channels: 1` for
# grayscale, `ignore_values` for "void" labels, `mask_encoding: "rgb"` with a
# `color_map` for colour-coded masks, and `crop_size` near your objects' scale.
