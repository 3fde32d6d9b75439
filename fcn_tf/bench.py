"""``python -m fcn_tf.bench``: how fast the models run here, against the machine's limits.

Measures in one run, each model in its own process (so its peak memory is its own):

- the machine: float32 and bfloat16 matrix-multiply GFLOP/s with the same
  thread count (the best of a few square sizes);
- per model: FLOPs per image counted from its layers (fcn_tf.utils.flops);
  inference images/s through the Keras model (a ``tf.function``, optionally
  XLA-compiled) and through the exported SavedModel's ``serving_default``
  signature (uint8 in, class ids and probabilities out); train-step images/s
  (SGD with momentum, the package's cross-entropy); achieved GFLOP/s and the
  fraction of the matmul rate of the same precision; the process' peak memory;
- serving at variable sizes: the first call at each new input size and the
  steady per-call time of a SavedModel with and without XLA, and the number of
  calls at one size after which XLA's compile time is paid back;
- the input pipeline's images/s (built-in dataset, full augmentation) next to
  the models' training consumption;
- with ``--agreement RUN``: how many pixels' class ids a trained model changes
  when it runs in bfloat16 instead of float32, over the run's validation split.

Every figure is the median of at least ``--steps`` timed calls after warm-up,
with the fastest and slowest call as spread. The table is printed and the
results written as JSON (``--out``, never overwriting an earlier file).
"""

import argparse
import dataclasses
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# Name -> (registered model, backbone, builder options). The networks the issue asks about.
MODELS = {
    "fcn8s": ("fcn8s", "vgg16", {}),
    "unet": ("unet", None, {}),
    "deeplabv3plus_mobilenet_v2": ("deeplabv3plus", "mobilenet_v2", {}),
    "deeplabv3plus_xception": ("deeplabv3plus", "xception", {}),
    "fcn_deconv": ("fcn_deconv", None, {}),
}
NUM_CLASSES = 21
JIT = {"off": False, "on": True}
DEFAULT_MATMUL_SIZES = (1024, 2048, 4096)


@dataclasses.dataclass
class Timing:
    """Seconds per call: the first call (tracing, compiling), then the timed ones."""

    first: float
    times: list

    @property
    def median(self):
        return statistics.median(self.times)

    def to_dict(self):
        return {"first_call_s": self.first, "median_s": self.median, "min_s": min(self.times),
                "max_s": max(self.times), "timed_calls": len(self.times)}


def time_calls(fn, steps, warmup=1, min_seconds=0.0, max_steps=None):
    """Call ``fn`` (which must block until its result is ready) and time it.

    One first call (reported apart: it traces and compiles), ``warmup - 1``
    more untimed calls, then at least ``steps`` timed calls, more while their
    total is under ``min_seconds`` (up to ``max_steps``).
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        fn()
    max_steps = max_steps or 10 * steps
    times = []
    while len(times) < steps or (sum(times) < min_seconds and len(times) < max_steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(first, times)


def peak_memory_mib():
    """Peak resident memory of this process so far (MiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def configure_threads(threads):
    """Must run before TensorFlow executes anything."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


# ---------------------------------------------------------------------------
# The machine


def matmul_rates(args):
    """{dtype: {"gflops": best, "by_size": {n: GFLOP/s}}}: square matmuls of ``--matmul-sizes``."""
    import tensorflow as tf

    rates = {}
    for dtype in ("float32", "bfloat16"):
        best = {}
        for n in args.matmul_sizes:
            a = tf.cast(tf.random.normal((n, n)), dtype)
            b = tf.cast(tf.random.normal((n, n)), dtype)
            matmul = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b)[0, :8],
                                                                    tf.float32)))
            timing = time_calls(lambda: matmul(a, b).numpy(), steps=args.steps, warmup=2,
                                min_seconds=2.0)
            best[n] = 2 * n**3 / timing.median / 1e9
        rates[dtype] = {"gflops": max(best.values()), "by_size": best}
    return rates


# ---------------------------------------------------------------------------
# Models


def build(key, precision, input_size=None):
    import keras

    from fcn_tf.models import build_model

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


def bench_model(key, args):
    """Every measurement of one model; runs in its own process."""
    import keras
    import numpy as np
    import tensorflow as tf

    from fcn_tf.losses import SegmentationCrossEntropy
    from fcn_tf.utils.flops import TRAIN_STEP_FORWARD_PASSES, flops_per_image

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
                        x = rng.random((batch, size, size, 3), np.float32)
                        y = rng.integers(0, NUM_CLASSES, (batch, size, size)).astype(np.int32)
                        measure(results, "train", precision, jit, size, batch,
                                TRAIN_STEP_FORWARD_PASSES * flops[size],
                                lambda: model.train_on_batch(x, y), args)
            out["peak_memory_mib"][f"training {precision}"] = peak_memory_mib()
        model = None  # free it before the next precision is built
        keras.backend.clear_session()
    return out


def bench_savedmodel(model, precision, args, flops, results, rng):
    """Export ``model`` and time its ``serving_default`` signature (uint8 in)."""
    import numpy as np
    import tensorflow as tf

    from fcn_tf.export import export_saved_model
    from fcn_tf.preprocessing import Preprocessing

    with tempfile.TemporaryDirectory(prefix="fcn_tf-bench-") as folder:
        export_saved_model(model, Preprocessing.preset("unit", 3), folder)
        serve = tf.saved_model.load(folder).signatures["serving_default"]
        for size in args.sizes:
            for batch in args.batches:
                images = tf.constant(rng.integers(0, 256, (batch, size, size, 3), np.uint8))
                measure(results, "savedmodel", precision, "off", size, batch, flops[size],
                        lambda: serve(images=images)["class_ids"].numpy(), args)


def bench_serving_sizes(args):
    """First call at each new size vs steady calls, SavedModel with and without XLA."""
    import numpy as np
    import tensorflow as tf

    from fcn_tf.export import export_saved_model
    from fcn_tf.preprocessing import Preprocessing

    key = args.serving_model
    model = build(key, "float32")
    rng = np.random.default_rng(0)
    out = {"model": key, "sizes": [list(s) for s in args.serving_sizes], "by_jit": {}}
    for jit in ("off", "on"):
        with tempfile.TemporaryDirectory(prefix="fcn_tf-bench-") as folder:
            export_saved_model(model, Preprocessing.preset("unit", 3), folder,
                               jit_compile=JIT[jit])
            serve = tf.saved_model.load(folder).signatures["serving_default"]
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


# ---------------------------------------------------------------------------
# Input pipeline and bf16 agreement


def bench_pipeline(args):
    from fcn_tf.data.bench import bench_pipelines
    from fcn_tf.data.config import DataConfig

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
    import keras
    import numpy as np

    from fcn_tf.data.pipeline import build_dataset
    from fcn_tf.inference import find_run_dir, read_run_config, resolve_checkpoint
    from fcn_tf.precision import with_precision
    from fcn_tf.preprocessing import Preprocessing

    checkpoint = resolve_checkpoint(run)
    run_dir = find_run_dir(run)
    if run_dir is None:
        raise SystemExit(f"--agreement {run}: expected a run folder (with config.json); "
                         "the validation split comes from its config.")
    config = read_run_config(run_dir)
    with open(os.path.join(run_dir, "preprocessing.json"), encoding="utf-8") as f:
        preprocessing = Preprocessing.from_dict(json.load(f))
    trained = keras.models.load_model(checkpoint, compile=False)
    f32, bf16 = with_precision(trained, "float32"), with_precision(trained, "mixed_bfloat16")
    split = config.train.validation_split or "train"
    dataset = build_dataset(config.data, split, training=False, batch_size=1,
                            preprocessing=preprocessing)
    changed = total = 0
    max_diff = 0.0
    for images, labels in dataset:
        a = np.asarray(f32(images, training=False), np.float32)
        b = np.asarray(bf16(images, training=False), np.float32)
        ids_a = a.argmax(-1) if a.shape[-1] > 1 else (a[..., 0] > 0)
        ids_b = b.argmax(-1) if b.shape[-1] > 1 else (b[..., 0] > 0)
        changed += int((ids_a != ids_b).sum())
        total += ids_a.size
        max_diff = max(max_diff, float(np.abs(a - b).max()))
    out = {"run": os.path.abspath(run_dir), "checkpoint": checkpoint, "split": split,
           "pixels": total, "changed_pixels": changed, "changed_fraction": changed / total,
           "max_abs_logit_difference": max_diff}
    print(f"  agreement: bf16 changes {changed} of {total} class ids "
          f"({100 * changed / total:.3f}%), max |logit difference| {max_diff:.3g}",
          file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------------------
# Orchestration


def worker(task, args):
    configure_threads(args.threads)
    if task == "machine":
        return {"matmul": matmul_rates(args), "peak_memory_mib": peak_memory_mib()}
    if task == "pipeline":
        return bench_pipeline(args)
    if task == "serving":
        return bench_serving_sizes(args)
    if task == "agreement":
        return bench_agreement(args.agreement, args)
    return bench_model(task, args)


def run_worker(task, argv):
    """Run one task in a fresh process; its JSON result comes back through a file."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    try:
        command = [sys.executable, "-m", "fcn_tf.bench", *argv, "--worker", task,
                   "--result-file", path]
        code = subprocess.call(command)
        if code != 0:
            return {"error": f"exit status {code}"}
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    finally:
        os.remove(path)


def _fraction(entry, matmul):
    peak = matmul["bfloat16" if "bfloat16" in entry["precision"] else "float32"]["gflops"]
    return entry["gflops"] / peak


def format_report(report):
    matmul = report["machine"]["matmul"]
    lines = [f"Machine: {report['cores']} cores, {report['threads'] or 'all'} threads; "
             f"matmul float32 {matmul['float32']['gflops']:.0f} GFLOP/s, bfloat16 "
             f"{matmul['bfloat16']['gflops']:.0f} GFLOP/s (best of sizes "
             f"{', '.join(map(str, matmul['float32']['by_size']))})", ""]
    header = (f"{'model':<28}{'kind':<11}{'precision':<15}{'jit':<5}{'size':>5}{'batch':>6}"
              f"{'images/s':>10}{'spread':>16}{'GFLOP/s':>9}{'% peak':>8}")
    lines += [header, "-" * len(header)]
    for model in report["models"]:
        if "error" in model:
            lines.append(f"{model.get('model', '?'):<28}failed: {model['error']}")
            continue
        for e in model["results"]:
            if "error" in e:
                lines.append(f"{model['model']:<28}{e['kind']:<11}{e['precision']:<15}"
                             f"{e['jit']:<5}{e['size']:>5}{e['batch']:>6}  failed: "
                             f"{e['error'][:60]}")
                continue
            spread = f"{e['batch'] / e['max_s']:.2f}-{e['batch'] / e['min_s']:.2f}"
            lines.append(f"{model['model']:<28}{e['kind']:<11}{e['precision']:<15}{e['jit']:<5}"
                         f"{e['size']:>5}{e['batch']:>6}{e['images_per_s']:>10.2f}{spread:>16}"
                         f"{e['gflops']:>9.1f}{100 * _fraction(e, matmul):>7.0f}%")
        flops = ", ".join(f"{s}: {f / 1e9:.1f}" for s, f in model["flops_per_image"].items())
        memory = ", ".join(f"{k} {v:.0f}" for k, v in model.get("peak_memory_mib", {}).items())
        lines.append(f"{'':<28}GFLOP/image {flops}; {model['parameters']:,} parameters; "
                     f"peak MiB {memory}")
    lines.append("% peak: achieved GFLOP/s over the matmul rate of the same precision "
                 "(train steps count 3 forward passes).")
    if report.get("pipeline"):
        lines.append("")
        for size, rates in report["pipeline"].items():
            lines.append(f"Input pipeline {size}x{size} (built-in data, full augmentation): "
                         + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()) + " images/s")
    if report.get("serving"):
        serving = report["serving"]
        lines += ["", f"Serving {serving['model']} at new input sizes (SavedModel, batch 1):"]
        for i, size in enumerate(serving["sizes"]):
            off, on = serving["by_jit"]["off"][i], serving["by_jit"]["on"][i]
            even = serving["break_even_calls"][i]
            lines.append(f"  {size[0]}x{size[1]}: first call {off['first_call_s']:.2f} s / XLA "
                         f"{on['first_call_s']:.2f} s; steady {off['median_s'] * 1e3:.1f} ms / "
                         f"XLA {on['median_s'] * 1e3:.1f} ms; XLA pays back after "
                         + (f"{even:.0f} calls" if even is not None else "never"))
    if report.get("agreement"):
        a = report["agreement"]
        lines += ["", f"bfloat16 vs float32 class ids on {a['run']} ({a['split']}): "
                      f"{100 * a['changed_fraction']:.3f}% of {a['pixels']} pixels changed, "
                      f"max |logit difference| {a['max_abs_logit_difference']:.3g}"]
    return "\n".join(lines)


def output_path(out):
    """``out`` if it does not exist; else ``out`` with a time stamp, never overwriting."""
    if not os.path.exists(out):
        return out
    stem, ext = os.path.splitext(out)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = f"{stem}-{stamp}{ext}", 2
    while os.path.exists(candidate):
        candidate, n = f"{stem}-{stamp}-{n}{ext}", n + 1
    return candidate


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.bench",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL",
                        help=f"any of {', '.join(MODELS)} (default: all)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512],
                        help="inference input sizes (square)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8],
                        help="inference batch sizes")
    parser.add_argument("--train-sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--train-batches", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--jit", nargs="+", default=["off", "on"], choices=list(JIT),
                        help="XLA settings for Keras inference")
    parser.add_argument("--train-jit", nargs="+", default=["off", "on"], choices=list(JIT),
                        help="XLA settings for train steps")
    parser.add_argument("--no-savedmodel", dest="savedmodel", action="store_false",
                        help="skip the exported SavedModel's timings")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--no-pipeline", dest="pipeline", action="store_false")
    parser.add_argument("--serving-model", default="deeplabv3plus_mobilenet_v2",
                        choices=list(MODELS), help="model for the variable-size serving test")
    parser.add_argument("--serving-sizes", type=int, nargs=2, action="append",
                        metavar=("H", "W"),
                        help="sizes served one after another (default 224x224, 240x320, "
                             "360x480, 512x512); repeat the option")
    parser.add_argument("--no-serving", dest="serving", action="store_false")
    parser.add_argument("--agreement", metavar="RUN",
                        help="a trained run folder: compare its class ids in float32 and "
                             "mixed_bfloat16 over its validation split")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads (default: TensorFlow's, all cores)")
    parser.add_argument("--matmul-sizes", type=int, nargs="+", default=list(DEFAULT_MATMUL_SIZES),
                        help="square matrix sizes for the machine's matmul rate (best is kept)")
    parser.add_argument("--steps", type=int, default=5, help="timed calls at least")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls first (the first traces and compiles)")
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="keep timing (up to 10 x --steps calls) until this much time")
    parser.add_argument("--out", default="bench.json", help="JSON results (never overwritten)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in args.models:
        if name not in MODELS:
            from fcn_tf.utils.names import unknown_name_message

            parser.error(unknown_name_message("--models", name, list(MODELS)))
    args.serving_sizes = args.serving_sizes or [(224, 224), (240, 320), (360, 480), (512, 512)]
    for name, values in (("--steps", [args.steps]), ("--sizes", args.sizes),
                         ("--batches", args.batches), ("--train-sizes", args.train_sizes),
                         ("--train-batches", args.train_batches)):
        if min(values) < 1:
            parser.error(f"{name}: expected positive integers, received {values}.")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker:
        result = worker(args.worker, args)
        with open(args.result_file, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return 0
    from fcn_tf.data.bench import cpu_cores

    started = time.time()
    report = {"started": datetime.datetime.now().isoformat(timespec="seconds"),
              "cores": cpu_cores(), "threads": args.threads, "argv": argv,
              "load_average_at_start": os.getloadavg()[0]}
    print(f"fcn_tf.bench: {report['cores']} cores, load average {report['load_average_at_start']:.2f}",
          file=sys.stderr, flush=True)
    report["machine"] = run_worker("machine", argv)
    if "error" in report["machine"]:
        print(f"error: the matmul measurement failed ({report['machine']['error']})",
              file=sys.stderr)
        return 1
    report["models"] = [{"model": key, **run_worker(key, argv)} for key in args.models]
    if args.pipeline:
        report["pipeline"] = run_worker("pipeline", argv)
    if args.serving:
        report["serving"] = run_worker("serving", argv)
    if args.agreement:
        report["agreement"] = run_worker("agreement", argv)
    report["seconds"] = time.time() - started
    # A second matmul measurement at the end shows how much the machine's speed drifted.
    report["machine_at_end"] = run_worker("machine", argv)
    text = format_report(report)
    end = report["machine_at_end"]
    if "matmul" in end:
        text += (f"\n\nMatmul at the end: float32 {end['matmul']['float32']['gflops']:.0f}, "
                 f"bfloat16 {end['matmul']['bfloat16']['gflops']:.0f} GFLOP/s "
                 f"(drift of the machine during the run); {report['seconds']:.0f} s in all")
    print(text)
    path = output_path(args.out)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(f"\nWrote {path}")
    failed = [m["model"] for m in report["models"] if "error" in m]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
