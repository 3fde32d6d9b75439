# %% [markdown]
# # 5. Train, predict, evaluate
#
# The whole loop on the built-in shapes dataset (5 classes: background,
# circle, square, triangle, cross; 128x128 images, generated on first use):
#
# 1. read the default run config `config.json` (a small U-Net) and shorten it
#    with overrides, exactly as `python -m fcn_tf.train config.json --set train.epochs=8`
#    (and a few more `--set`s, below);
# 2. train, and plot the learning curves;
# 3. predict on validation images and show them next to the ground truth;
# 4. evaluate with the FCN paper's metrics (`python -m fcn_tf.evaluate`).
#
# The default config trains its U-Net (8 filters in the first level) for
# several times longer (its `train.epochs` and `train.steps_per_epoch` are
# printed below) on 128x128 crops; this notebook trains the same network for
# 8 epochs of 24 steps on 64x64 crops (a quarter of the pixels per step; the
# network is fully convolutional, so it is still evaluated on the whole
# 128x128 images) and skips the XLA timing of `train.jit_compile: auto`, so
# that it runs in under two minutes on 2 CPU cores without bf16 units. Expect
# an unfinished model: validation mean IoU between about 0.2 and 0.4 (it
# varies from run to run), above the 0.17 of predicting background everywhere.

# %%
import os
import pathlib
import tempfile

import cv2
import matplotlib.pyplot as plt
import numpy as np

import fcn_tf
from fcn_tf.config.run_config import load_config
from fcn_tf.data import split_files
from fcn_tf.evaluation import evaluate_checkpoint, format_scores
from fcn_tf.inference import load_for_inference
from fcn_tf.outputs import logits_to_classes
from fcn_tf.training.trainer import train
from fcn_tf.visualize import colorize

def inline_figures():
    """fcn_tf's image writers (curves.png, predictions.png) switch matplotlib to Agg; switch back."""
    get_ipython().run_line_magic("matplotlib", "inline")  # i.e. %matplotlib inline


workdir = pathlib.Path(tempfile.mkdtemp(prefix="fcn_tf_train_"))
EPOCHS = 8

# The repository's default config (next to the fcn_tf package in a checkout).
config_path = pathlib.Path(fcn_tf.__file__).resolve().parents[1] / "config.json"
print("config:", config_path)
print(config_path.read_text())

# %% [markdown]
# ## 1. The config, with overrides
#
# `--set section.key=value` overrides are applied before validation, so they
# get the same checks as the file. We send the generated dataset and the run
# folder to a temporary directory, train fewer and shorter epochs on smaller
# crops without the XLA timing, and switch off TensorBoard logs.

# %%
overrides = [
    f"train.epochs={EPOCHS}",
    "train.steps_per_epoch=24",
    "data.crop_size=[64, 64]",
    "train.jit_compile=false",
    f"data.root={workdir / 'builtin'}",
    f"output.dir={workdir / 'runs'}",
    "output.tensorboard=false",
    "export.enabled=false",
]
config = load_config(config_path, overrides)
print("model:", config.model.name, config.model.options)
print("data:", config.data.format, config.data.num_classes, "classes", list(config.data.class_names))
print("train:", config.train.epochs, "epochs of", config.train.steps_per_epoch, "steps, batch",
      config.train.batch_size, config.train.optimizer,
      "lr", config.train.learning_rate, config.train.schedule, "schedule,", config.train.precision)
assert config.train.epochs == EPOCHS and config.data.num_classes == 5

# %% [markdown]
# ## 2. Train
#
# `train` makes the run folder, writes the resolved config, checkpoints after
# every epoch (so an interrupted run resumes), keeps `best.keras` by
# validation mean IoU, and at the end evaluates the best model and draws
# sample predictions.

# %%
result = train(config, fresh=True, verbose=2)
inline_figures()
run_dir = pathlib.Path(result.run_dir)
print(f"{result.epochs_completed} epochs in {result.seconds:.0f} s; best val mean IoU {result.best_metric:.3f}")
print(sorted(os.listdir(run_dir)))
assert result.epochs_completed == EPOCHS
assert {"config.json", "history.csv", "curves.png", "best.keras", "metrics.json",
        "predictions.png", "preprocessing.json"} <= set(os.listdir(run_dir))

# %% [markdown]
# ## Learning curves
#
# From `history.csv` (the run folder's `curves.png` shows the same). The
# learning rate follows the config's warmup and poly decay.

# %%
history = np.genfromtxt(run_dir / "history.csv", delimiter=",", names=True)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
for ax, key in zip(axes, ("loss", "mean_iou")):
    ax.plot(history["epoch"], history[key], "o-", label="train")
    ax.plot(history["epoch"], history["val_" + key], "s--", label="val")
    ax.set_xlabel("epoch")
    ax.set_title(key)
    ax.legend()
    ax.grid(alpha=0.3)
axes[2].plot(history["epoch"], history["learning_rate"], "o-")
axes[2].set_title("learning rate")
axes[2].set_xlabel("epoch")
fig.tight_layout()
plt.show()
assert history["loss"][-1] < history["loss"][0]

# %% [markdown]
# ## 3. Predict
#
# `load_for_inference` takes a run folder, a `.keras` file or an exported
# SavedModel and gives a model that takes raw pixels in [0, 255] (the
# normalisation recorded in the run's `preprocessing.json` is applied for you),
# which is what `python -m fcn_tf.predict` uses. We read validation images
# and masks from disk and compare.

# %%
model = load_for_inference(str(run_dir))
print("normalisation:", model.preprocessing.to_dict(), "from", model.preprocessing_source)
pairs = split_files(config.data, "val")[:4]
images = np.stack([cv2.imread(image)[..., ::-1] for image, _ in pairs])
masks = np.stack([cv2.imread(mask, cv2.IMREAD_UNCHANGED) for _, mask in pairs])
predicted = logits_to_classes(model.logits(images.astype(np.float32)))
assert predicted.shape == masks.shape

colors = model.info["colors"]
fig, axes = plt.subplots(len(images), 3, figsize=(7.5, 2.5 * len(images)))
for row, (image, mask, pred) in enumerate(zip(images, masks, predicted)):
    for ax, panel, title in zip(axes[row], (image, colorize(mask, colors), colorize(pred, colors)),
                                ("image", "ground truth", "prediction")):
        ax.imshow(panel)
        ax.set_axis_off()
        if row == 0:
            ax.set_title(title)
fig.tight_layout()
plt.show()
print("pixel agreement on these images:", float((predicted == masks).mean()))

# %% [markdown]
# ## 4. Evaluate
#
# `evaluate_checkpoint` (behind `python -m fcn_tf.evaluate CONFIG --checkpoint
# RUN`) scores the whole validation split from one confusion matrix at full
# resolution: pixel accuracy, mean accuracy, mean IU and frequency-weighted IU
# (Long et al., 2015, Sec. 5), and writes the report to `RUN/eval-val/`.
# Always-background would score a pixel accuracy of about 0.86 but a mean IU
# of about 0.17 (one class of five right), which is why mean IU is the
# number to watch.

# %%
scores, eval_dir = evaluate_checkpoint(config, str(run_dir), "val", verbose=0)
inline_figures()
print(format_scores(scores))
print("report files:", sorted(os.listdir(eval_dir)))
assert abs(scores["mean_iou"] - result.metrics["mean_iou"]) < 1e-6

# The same score for a model that predicts background everywhere, from the
# ground-truth pixel counts of the same confusion matrix: IoU of background =
# its pixel share, 0 for the shapes.
pixels = np.array([row["pixels"] for row in scores["per_class"]])
always_background = pixels[0] / pixels.sum() / config.data.num_classes
print(f"always-background mean IU: {always_background:.3f}; this model: {scores['mean_iou']:.3f}")
assert scores["mean_iou"] > always_background + 0.01, "training should beat always-background"

plt.figure(figsize=(5, 5))
plt.imshow(plt.imread(os.path.join(eval_dir, "confusion_matrix.png")))
plt.axis("off")
plt.show()

# %% [markdown]
# To train the model properly, run the default config without overrides
# (`python -m fcn_tf.train config.json`); notebook 6 exports a trained run
# for serving.
