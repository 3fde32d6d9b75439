"""What is measured: each model's inference and train steps, serving at new sizes,
the input pipeline, and bfloat16 agreement. Each function runs in a worker process."""

import json
import os
import sys
import tempfile

from fcn_tf.bench.flops import TRAIN_STEP_FORWARD_PASSES, flops_per_image
from fcn_tf.bench.timing import peak_memory_mib, time_calls
from fcn_tf.data.bench import bench_pipelines
from fcn_tf.data.config import DataConfig
from fcn_tf.data.pipeline import build_dataset
from fcn_tf.exporting import export_saved_model
from fcn_tf.inference import load_keras
from fcn_tf.outputs import logits_to_classes
from fcn_tf.losses import SegmentationCrossEntropy
from fcn_tf.models import build_model
from fcn_tf.precision import with_precision
from fcn_tf.preprocessing import Preprocessing
from fcn_tf.runs import find_run_dir, read_run_config
from fcn_tf.signatures import SIGNATURE_IMAGES

# Name -> (registered model, backbone, builder options): the networks benchmarked by default.
MODELS = {
    "fcn8s": ("fcn8s", "vgg16", {}),
    "unet": ("unet", None, {}),
    "deeplabv3plus_mobilenet_v2": ("deeplabv3plus", "mobilenet_v2", {}),
    "deeplabv3plus_xception": ("deeplabv3plus", "xception", {}),
    "fcn_deconv": ("fcn_deconv", None, {}),
}
NUM_CLASSES = 21
JIT = {"off": False, "on": True}


def build(key, precision, input_size=None):
    import keras

    name, backbone, options = MODELS[key]
    keras.mixed_precision.set_global_policy(precision)
    try:
        return build_model(name, NUM_CLASSES, backbone, input_size=input_size, **options)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def measure(results, kind, precision, jit, size, batch, flops, fn, args):
    """Time ``fn`` and append an entry to ``results``; an error is recorded, not raised.

    (XLA refuses some mixed-precision gradients, for example: the other
    settings of the same model are still measured.)
    """
    entry = {"kind": kind, "precision": precision, "jit": jit, "size": size, "batch": batch}
    label = f"  {kind:<11}{precision:<15}jit {jit:<4}{size:>4}x{size:<5}batch {batch:<3}"
    try:
        timing = time_calls(fn, args.steps, args.warmup, args.min_seconds)
    except Exception as error:  # noqa: BLE001 - any failure of one setting is reported
        message = str(error).strip().splitlines()[0][:300]
        results.append({**entry, "error": f"{type(error).__name__}: {message}"})
        print(f"{label}failed: {type(error).__name__}: {message}", file=sys.stderr, flush=True)
        return None
    rate = batch / timing.median
    entry.update(images_per_s=rate, gflops=rate * flops / 1e9, **timing.to_dict())
    results.append(entry)
    print(f"{label}{rate:9.2f} images/s  ({timing.median * 1e3:.1f} ms/call, "
          f"{min(timing.times) * 1e3:.1f}-{max(timing.times) * 1e3:.1f})", file=sys.stderr,
          flush=True)
    return entry


def save_partial(out, args):
    """Write what is measured so far, so a worker killed (out of memory) keeps it."""
    if args.result_file:
        with open(args.result_file, "w", encoding="utf-8") as f:
            json.dump(out, f)


def bench_model(key, args):
    """Every measurement of one model; runs in its own process."""
    import keras
    import numpy as np
    import tensorflow as tf

    name, backbone, options = MODELS[key]
    sizes = sorted(set(args.sizes) | set(args.train_sizes))
    flops = {s: flops_per_image(name, NUM_CLASSES, s, s, backbone, **options) for s in sizes}
    out = {"model": key, "flops_per_image": {str(s): f for s, f in flops.items()},
           "results": []}
    results = out["results"]
    rng = np.random.default_rng(0)
    print(f"{key}: " + ", ".join(f"{s}x{s}: {f / 1e9:.1f} GFLOP/image" for s, f in flops.items()),
          file=sys.stderr, flush=True)

    for precision in args.precisions:
        model = build(key, precision)
        params = model.count_params()
        out["parameters"] = params
        if not args.no_inference:
            for jit in args.jit:
                infer = tf.function(lambda x: model(x, training=False), jit_compile=JIT[jit],
                                    reduce_retracing=True)
                for size in args.sizes:
                    for batch in args.batches:
                        x = tf.constant(rng.random((batch, size, size, 3), np.float32))
                        measure(results, "keras", precision, jit, size, batch, flops[size],
                                lambda: infer(x).numpy(), args)
                        save_partial(out, args)
        if args.savedmodel and not args.no_inference:
            bench_savedmodel(model, precision, args, flops, results, rng)
        out.setdefault("peak_memory_mib", {})[f"inference {precision}"] = peak_memory_mib()
        if not args.no_train:
            for jit in args.train_jit:
                model = build(key, precision)
                model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9),
                              loss=SegmentationCrossEntropy(ignore_label=255),
                              jit_compile=JIT[jit])
                for size in args.train_sizes:
                    for batch in args.train_batches:
                        if batch * size * size > args.train_max_pixels:
                            results.append({"kind": "train", "precision": precision, "jit": jit,
                                            "size": size, "batch": batch, "skipped":
                                            f"batch x height x width > --train-max-pixels "
                                            f"{args.train_max_pixels}"})
                            continue
                        x = rng.random((batch, size, size, 3), np.float32)
                        y = rng.integers(0, NUM_CLASSES, (batch, size, size)).astype(np.int32)
                        measure(results, "train", precision, jit, size, batch,
                                TRAIN_STEP_FORWARD_PASSES * flops[size],
                                lambda: model.train_on_batch(x, y), args)
                        save_partial(out, args)
            out["peak_memory_mib"][f"training {precision}"] = peak_memory_mib()
        model = None  # free it before the next precision is built
        keras.backend.clear_session()
    return out


def bench_savedmodel(model, precision, args, flops, results, rng):
    """Export ``model`` and time its ``serving_default`` signature (uint8 in)."""
    import numpy as np
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="fcn_tf-bench-") as folder:
        export_saved_model(model, Preprocessing.preset("unit", 3), folder)
        serve = tf.saved_model.load(folder).signatures[SIGNATURE_IMAGES]
        for size in args.sizes:
            for batch in args.batches:
                images = tf.constant(rng.integers(0, 256, (batch, size, size, 3), np.uint8))
                measure(results, "savedmodel", precision, "off", size, batch, flops[size],
                        lambda: serve(images=images)["class_ids"].numpy(), args)


def bench_serving_sizes(args):
    """First call at each new size vs steady calls, SavedModel with and without XLA."""
    import numpy as np
    import tensorflow as tf

    key = args.serving_model
    model = build(key, "float32")
    rng = np.random.default_rng(0)
    out = {"model": key, "sizes": [list(s) for s in args.serving_sizes], "by_jit": {}}
    for jit in ("off", "on"):
        with tempfile.TemporaryDirectory(prefix="fcn_tf-bench-") as folder:
            export_saved_model(model, Preprocessing.preset("unit", 3), folder,
                               jit_compile=JIT[jit])
            serve = tf.saved_model.load(folder).signatures[SIGNATURE_IMAGES]
            rows = []
            for height, width in args.serving_sizes:
                images = tf.constant(rng.integers(0, 256, (1, height, width, 3), np.uint8))
                timing = time_calls(lambda: serve(images=images)["class_ids"].numpy(),
                                    args.steps, 1, args.min_seconds)
                rows.append({"size": [height, width], **timing.to_dict()})
                print(f"  serving {key} jit {jit:<4}{height}x{width}: first call "
                      f"{timing.first:.2f} s, then {timing.median * 1e3:.1f} ms",
                      file=sys.stderr, flush=True)
            out["by_jit"][jit] = rows
    out["break_even_calls"] = []
    for off, on in zip(out["by_jit"]["off"], out["by_jit"]["on"]):
        extra_first = (on["first_call_s"] - on["median_s"]) - (off["first_call_s"] - off["median_s"])
        saved = off["median_s"] - on["median_s"]
        out["break_even_calls"].append(extra_first / saved if saved > 0 else None)
    return out


def bench_pipeline(args):
    out = {}
    for size in args.train_sizes:
        rates = bench_pipelines(DataConfig(), crop_size=(size, size),
                                batch_size=max(args.train_batches), seconds=3.0, rounds=2)
        out[str(size)] = rates
        print(f"  pipeline {size}x{size}: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
              + " images/s", file=sys.stderr, flush=True)
    return out


def bench_agreement(run, args):
    """Class ids of a trained model in float32 vs mixed_bfloat16 over its validation split."""
    import numpy as np

    run_dir = find_run_dir(run)
    if run_dir is None:
        raise SystemExit(f"--agreement {run}: expected a run folder (with config.json); "
                         "the validation split comes from its config.")
    config = read_run_config(run_dir)
    loaded = load_keras(run, config, run_dir=run_dir)
    trained = loaded.keras_model
    f32, bf16 = with_precision(trained, "float32"), with_precision(trained, "mixed_bfloat16")
    split = config.train.validation_split or "train"
    dataset = build_dataset(config.data, split, training=False, batch_size=1,
                            preprocessing=loaded.preprocessing)
    changed = total = 0
    max_diff = 0.0
    for images, labels in dataset:
        a = np.asarray(f32(images, training=False), np.float32)
        b = np.asarray(bf16(images, training=False), np.float32)
        ids_a, ids_b = logits_to_classes(a), logits_to_classes(b)
        changed += int((ids_a != ids_b).sum())
        total += ids_a.size
        max_diff = max(max_diff, float(np.abs(a - b).max()))
    out = {"run": os.path.abspath(run_dir), "checkpoint": loaded.path, "split": split,
           "pixels": total, "changed_pixels": changed, "changed_fraction": changed / total,
           "max_abs_logit_difference": max_diff}
    print(f"  agreement: bf16 changes {changed} of {total} class ids "
          f"({100 * changed / total:.3f}%), max |logit difference| {max_diff:.3g}",
          file=sys.stderr, flush=True)
    return out
