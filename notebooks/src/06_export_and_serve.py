# %% [markdown]
# # 6. Export and serve
#
# A trained run folder holds a Keras checkpoint (`best.keras`) that expects
# *normalised* float images. For serving, `fcn_tf.exporting.export_checkpoint` (the
# library function behind `python -m fcn_tf.export --checkpoint RUN --out DIR
# --tflite`) writes a TensorFlow SavedModel with the normalisation inside the
# graph, so clients send raw pixels:
#
# - signature `serving_default`: `images` uint8 `[batch, H, W, 3]`, any size →
#   `class_ids` int32 `[batch, H, W]` and `probabilities` float32 `[batch, H, W, classes]`;
# - signature `serving_bytes`: `image_bytes`, a batch of encoded PNG/JPEG
#   strings of one size → the same outputs;
# - `metadata.json`: class names, colours, normalisation, training config;
# - optionally LiteRT files (`model.tflite`, `model_int8.tflite`, ...: uint8
#   `[1, H, W, 3]`, any height and width) and ONNX files (`model.onnx`:
#   uint8 `[batch, H, W, 3]`), read with `ai-edge-litert` and `onnxruntime`.
#
# We train a narrow U-Net (8 filters in its first level) for a few steps (the
# point here is the plumbing, not the accuracy), export it, reload it, call
# both signatures, the LiteRT and the ONNX files, and check every path
# against the Keras model, first by hand and then with the fidelity check. The run trains in float32 so that every path can be compared
# with the Keras model to float precision.
# (LiteRT and ONNX have no bfloat16 kernels: for a checkpoint trained with the
# default config's `mixed_bfloat16` policy the exporter converts a float32 copy.)

# %%
import json
import os
import pathlib
import tempfile

import cv2
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import fcn_tf
from fcn_tf.config.run_config import load_config
from fcn_tf.data import split_files
from fcn_tf.exporting import export_checkpoint
from fcn_tf.fidelity import check_export, format_fidelity
from fcn_tf.inference import load_for_inference
from fcn_tf.outputs import logits_to_probabilities
from fcn_tf.runs import read_preprocessing
from fcn_tf.runtimes import load_artifact
from fcn_tf.training.trainer import train
from fcn_tf.visualize import colorize

def inline_figures():
    """fcn_tf's image writers (curves.png, predictions.png) switch matplotlib to Agg; switch back."""
    get_ipython().run_line_magic("matplotlib", "inline")  # i.e. %matplotlib inline


workdir = pathlib.Path(tempfile.mkdtemp(prefix="fcn_tf_export_"))
config_path = pathlib.Path(fcn_tf.__file__).resolve().parents[1] / "config.json"
config = load_config(config_path, [
    "train.epochs=1", "train.steps_per_epoch=12", "train.precision=float32",
    "train.jit_compile=false",
    f"data.root={workdir / 'builtin'}", f"output.dir={workdir / 'runs'}",
    "output.tensorboard=false", "output.sample_images=0", "export.enabled=false",
])
result = train(config, fresh=True, verbose=0)
inline_figures()
run_dir = pathlib.Path(result.run_dir)
print(f"trained {result.epochs_completed} short epoch(s): val mean IoU {result.metrics['mean_iou']:.3f}")

# %% [markdown]
# ## Export
#
# `export_checkpoint` accepts a run folder (it takes `best.keras`) or a `.keras`
# file; `metadata_from_run` names the run whose `config.json` and
# `preprocessing.json` describe the model. The export is written to a
# temporary folder and renamed into place, so a failed export leaves nothing
# half-written. LiteRT files come in four precisions (`float32`, `float16`,
# dynamic-range `int8`, and `int8_full`, calibrated on training images), ONNX
# files in two (`float32`, dynamic `int8`); each is one file.

# %%
export_dir = workdir / "export" / "1"  # TensorFlow Serving wants MODEL/VERSION
info = export_checkpoint(str(run_dir), str(export_dir), metadata_from_run=str(run_dir),
                         tflite=True, tflite_precision=["float32", "int8", "int8_full"],
                         onnx=True, onnx_precision=["float32", "int8"])
print(json.dumps(info, indent=1))
print(sorted(os.listdir(export_dir)))
metadata = json.loads((export_dir / "metadata.json").read_text())
print({k: metadata[k] for k in ("model_name", "num_classes", "class_names", "image_channels",
                                "normalization")})
print(json.dumps(metadata["artifacts"]["model.onnx"], indent=1))
assert {"saved_model.pb", "metadata.json", "model.tflite", "model.onnx", "variables"} <= set(
    os.listdir(export_dir))
assert metadata["class_names"] == list(config.data.class_names)

# %% [markdown]
# ## Reload and call the uint8 signature
#
# `tf.saved_model.load` needs neither `fcn_tf` nor Keras' custom layers: the
# graph is self-contained (TensorFlow Serving loads the same files). The
# reference is the Keras checkpoint applied to images normalised with the
# run's `preprocessing.json`: both must give the same probabilities.

# %%
loaded = tf.saved_model.load(str(export_dir))
print("signatures:", list(loaded.signatures))
serve = loaded.signatures["serving_default"]
print("inputs:", serve.structured_input_signature[1])
print("outputs:", {k: (v.dtype.name, v.shape) for k, v in serve.structured_outputs.items()})

pairs = split_files(config.data, "val")[:4]
images = np.stack([cv2.imread(image)[..., ::-1] for image, _ in pairs])  # uint8 RGB
masks = np.stack([cv2.imread(mask, cv2.IMREAD_UNCHANGED) for _, mask in pairs])
served = serve(images=tf.constant(images))
assert served["class_ids"].dtype == tf.int32 and served["class_ids"].shape == images.shape[:3]

keras_model = keras.models.load_model(run_dir / "best.keras", compile=False)
preprocessing = read_preprocessing(run_dir)  # the run's preprocessing.json
normalised = preprocessing.apply_numpy(images)
keras_probabilities = logits_to_probabilities(keras_model(normalised, training=False).numpy())
difference = np.abs(served["probabilities"].numpy() - keras_probabilities).max()
agreement = (served["class_ids"].numpy() == keras_probabilities.argmax(-1)).mean()
print(f"SavedModel vs Keras: max |Δ probability| = {difference:.2e}, same class on {agreement:.2%} of pixels")
assert difference < 1e-4 and agreement > 0.999

# Any size goes in, the same size comes out.
odd = serve(images=tf.constant(images[:1, :96, :120]))
assert odd["class_ids"].shape == (1, 96, 120)

# %% [markdown]
# ## The bytes signature
#
# Clients that hold encoded files (a web form, a REST request with base64
# strings) call `serving_bytes` with PNG/JPEG bytes; the graph decodes them.
# PNG is lossless, so the result is exactly the uint8 result. All images of one
# request must share one size; the graph says so if they do not.

# %%
encoded = [cv2.imencode(".png", image[..., ::-1])[1].tobytes() for image in images]
from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
assert np.array_equal(from_bytes["class_ids"].numpy(), served["class_ids"].numpy())
assert np.allclose(from_bytes["probabilities"].numpy(), served["probabilities"].numpy(), atol=1e-6)
print("serving_bytes == serving_default on", len(encoded), "PNG images")

small = cv2.imencode(".png", images[0, :64, :64, ::-1])[1].tobytes()
try:
    loaded.signatures["serving_bytes"](image_bytes=tf.constant([encoded[0], small]))
    raise AssertionError("mixed sizes should be refused")
except tf.errors.InvalidArgumentError as error:
    reason = next(line for line in str(error).splitlines() if "same height and width" in line)
    print("mixed sizes refused:", reason.strip()[:200])

# %% [markdown]
# `fcn_tf.inference.load_for_inference` opens an exported model the same way
# as a run folder (what `python -m fcn_tf.predict` does): it reads
# `metadata.json` and calls the graph's `logits` function on raw pixels.

# %%
exported = load_for_inference(str(export_dir))
logits = exported.logits(images.astype(np.float32))
print(exported.kind, exported.info["class_names"])
assert np.array_equal(logits.argmax(-1), served["class_ids"].numpy())

# %% [markdown]
# ## LiteRT and ONNX
#
# The same images through the float32 LiteRT file (read by `ai-edge-litert`,
# the successor of TensorFlow's own TFLite interpreter) and the ONNX file
# (read by onnxruntime). `load_artifact` gives both one call: uint8 images in,
# the two outputs out. Neither file needs TensorFlow to run.

# %%
lite = load_artifact(str(export_dir / "model.tflite"))
onnx_model = load_artifact(str(export_dir / "model.onnx"))
print("LiteRT: free size", lite.free_size, "| ONNX: free size", onnx_model.free_size)
lite_out, onnx_out = lite(images), onnx_model(images)
for name, out in (("LiteRT", lite_out), ("ONNX", onnx_out)):
    difference = np.abs(out["probabilities"] - served["probabilities"].numpy()).max()
    agreement = (out["class_ids"] == served["class_ids"].numpy()).mean()
    print(f"{name} vs SavedModel: max |Δ probability| = {difference:.2e}, same class on {agreement:.2%}")
    assert difference < 1e-4 and agreement > 0.999
lite_ids = lite_out["class_ids"]
print({name: f"{size / 2**20:.2f} MiB" for name, size in info["files"].items()},
      f"SavedModel {info['saved_model_bytes'] / 2**20:.2f} MiB")

# %% [markdown]
# ## The fidelity table
#
# `check_export` (the library behind `python -m fcn_tf.export ... --check val`)
# runs the val split through the checkpoint and through every exported file,
# one image at a time and each runtime in turn, and reports the share of
# pixels whose class changed, the largest probability difference, mean IoU on
# the labels and images per second. The float32 files compute the model to
# float rounding (a 12-step model's probabilities are nearly tied, so rounding
# alone may flip a pixel in a hundred thousand); the quantised ones show what
# int8 costs here.

# %%
rows = check_export(str(export_dir), str(run_dir), config, "val", max_images=8)
print(format_fidelity(rows))
by_name = {row["name"]: row for row in rows}
for name in ("saved_model", "model.tflite", "model.onnx"):
    assert by_name[name]["max_probability_difference"] < 1e-5
    assert by_name[name]["pixels_changed"] < 1e-4
    assert abs(by_name[name]["mean_iou"] - by_name["keras"]["mean_iou"]) < 1e-3

# %%
inline_figures()
colors = metadata["colors"]
fig, axes = plt.subplots(len(images), 4, figsize=(10, 2.5 * len(images)))
for row in range(len(images)):
    panels = [(images[row], "image"), (colorize(masks[row], colors), "ground truth"),
              (colorize(served["class_ids"][row].numpy(), colors), "SavedModel"),
              (colorize(lite_ids[row], colors), "LiteRT")]
    for ax, (panel, title) in zip(axes[row], panels):
        ax.imshow(panel)
        ax.set_axis_off()
        if row == 0:
            ax.set_title(title)
fig.tight_layout()
plt.show()

# %% [markdown]
# The model was trained for 12 steps only, so its masks are rough; the
# point is that the SavedModel, the bytes signature, LiteRT and ONNX give the
# Keras model's answer. To serve with TensorFlow Serving, point it at
# `export/` (it picks the highest version folder) and post to
# `/v1/models/NAME:predict` with `"signature_name": "serving_bytes"` and base64
# images, or use the uint8 `serving_default` over gRPC.
