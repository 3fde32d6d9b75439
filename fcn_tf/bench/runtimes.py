"""``--runtimes``: images/s of one model through every runtime it can be deployed with.

Each model of ``--models`` (ImageNet-free random weights: speed does not
depend on them) is exported once with BatchNorm folded and once without
(:mod:`fcn_tf.models.folding`), as a SavedModel (float32 and
``mixed_bfloat16``), LiteRT files (float32, float16, int8) and ONNX files
(float32, int8); then the Keras model (a ``tf.function``) and every file are
called on the same uint8 image of ``--runtime-size``, batch 1, in
``--rounds`` alternating rounds (each runtime in turn, so the machine's
drift falls on all alike). Reported: the median seconds per image over the
rounds, as images/s, with the slowest and fastest round.
"""

import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from fcn_tf.bench.measurements import build
from fcn_tf.exporting import export_metadata, export_model
from fcn_tf.preprocessing import Preprocessing
from fcn_tf.runtimes import load_artifact
from fcn_tf.signatures import SIGNATURE_IMAGES

LITERT = ("float32", "float16", "int8")
ONNX = ("float32", "int8")
# SavedModel precisions; float32 and bfloat16 where the CPU has bf16 units.
SAVED_MODEL = ("float32", "mixed_bfloat16")


def _saved_model_call(path):
    signature = tf.saved_model.load(path).signatures[SIGNATURE_IMAGES]
    return lambda images: signature(images=tf.constant(images))


def _runners(model, folder):
    """``{(runtime, precision, folded): call}`` for every exported form of ``model``."""
    preprocessing = Preprocessing()
    metadata = export_metadata(model, preprocessing, "bench")
    runners = {}
    keras_call = tf.function(lambda x: model(preprocessing.apply(x), training=False))
    runners[("keras", "float32", False)] = lambda images: keras_call(tf.constant(images))
    for folded in (True, False):
        for precision in SAVED_MODEL:
            out = os.path.join(folder, f"{precision}-{'folded' if folded else 'kept'}")
            float32 = precision == "float32"
            export_model(model, preprocessing, metadata, out, precision=precision,
                         fold_batch_norm=folded, tflite=float32, tflite_precision=LITERT,
                         onnx=float32, onnx_precision=ONNX)
            runners[("saved_model", precision, folded)] = _saved_model_call(out)
            if not float32:
                continue
            for name in sorted(os.listdir(out)):
                if name.endswith((".tflite", ".onnx")):
                    runner = load_artifact(os.path.join(out, name))
                    runtime = "litert" if name.endswith(".tflite") else "onnx"
                    stem = name.split(".")[0]
                    precision_name = stem.split("_", 1)[1] if "_" in stem else "float32"
                    runners[(runtime, precision_name, folded)] = runner
    return runners


def bench_runtimes(key, args):
    """Rows of images/s per runtime, precision and folding for model ``key``."""
    size = args.runtime_size
    model = build(key, "float32")
    images = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), np.uint8)
    with tempfile.TemporaryDirectory(prefix="fcn_tf-bench-runtimes-") as folder:
        runners = _runners(model, folder)
        seconds = {name: [] for name in runners}
        for call in runners.values():  # warm-up: kernels, allocation
            call(images)
        for _ in range(args.rounds):
            for name, call in runners.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    call(images)
                seconds[name].append((time.perf_counter() - start) / args.steps)
    rows = []
    for (runtime, precision, folded), values in seconds.items():
        rows.append({"runtime": runtime, "precision": precision, "folded": folded,
                     "size": size, "images_per_s": 1.0 / float(np.median(values)),
                     "slowest": 1.0 / max(values), "fastest": 1.0 / min(values)})
    return {"model": key, "rows": rows}


def format_runtimes(results):
    """The runtimes table, one block per model."""
    lines = []
    for result in results:
        lines += ["", f"Runtimes of {result['model']} (batch 1, uint8 in, images/s; median of "
                      "rounds, slowest-fastest):"]
        if "error" in result:
            lines.append(f"  failed: {result['error']}")
        for row in result.get("rows", []):
            fold = "BN folded" if row["folded"] else ("BN kept" if row["runtime"] != "keras"
                                                       else "")
            lines.append(f"  {row['runtime']:<12}{row['precision']:<16}{fold:<10}"
                         f"{row['size']:>5}{row['images_per_s']:>9.2f}   "
                         f"{row['slowest']:.2f}-{row['fastest']:.2f}")
    return "\n".join(lines)
