"""The command line: one worker process per task, the report at the end."""

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

import fcn_tf.bench
from fcn_tf.bench.baseline import (comparison_worker, format_comparison, run_comparison,
                                   torch_missing_message)
from fcn_tf.bench.measurements import (JIT, MODELS, bench_agreement, bench_model, bench_pipeline,
                                       bench_serving_sizes)
from fcn_tf.bench.report import format_report, output_path
from fcn_tf.bench.runtimes import bench_runtimes, format_runtimes
from fcn_tf.bench.timing import (DEFAULT_MATMUL_SIZES, configure_threads, matmul_rates,
                                 peak_memory_mib)
from fcn_tf.data.bench import cpu_cores
from fcn_tf.precision import PRECISIONS
from fcn_tf.utils.names import unknown_name_message


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
    if task.startswith("runtimes:"):
        return bench_runtimes(task.split(":", 1)[1], args)
    if task.startswith("compare:"):
        _, framework, precision = task.split(":")
        return comparison_worker(framework, precision, args)
    return bench_model(task, args)


def run_worker(task, argv):
    """Run one task in a fresh process; its JSON result comes back through a file."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    try:
        command = [sys.executable, "-m", "fcn_tf.bench", *argv, "--worker", task,
                   "--result-file", path]
        code = subprocess.call(command)
        partial = {}
        if os.path.getsize(path):
            with open(path, encoding="utf-8") as f:
                partial = json.load(f)
        if code != 0:
            killed = " (killed: out of memory?)" if code in (-9, 137) else ""
            partial["error"] = f"exit status {code}{killed}; results measured before are kept"
        return partial
    finally:
        os.remove(path)


def _description():
    return fcn_tf.bench.__doc__.split("\n\n")[1]


def parse_args(argv):
    """The bench's arguments, checked (``parser.error`` exits with a message on a bad one)."""
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.bench",
                                     description=_description())
    _add_grid(parser)
    _add_sections(parser)
    _add_timing(parser)
    _add_baseline(parser)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _check(parser, args)
    args.serving_sizes = args.serving_sizes or [(224, 224), (240, 320), (360, 480), (512, 512)]
    return args


def _add_grid(parser):
    """What is timed: models, sizes, batches, precisions and XLA settings."""
    parser.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL",
                        help=f"any of {', '.join(MODELS)} (default: all)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512],
                        help="inference input sizes (square)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8],
                        help="inference batch sizes")
    parser.add_argument("--train-sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--train-batches", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=PRECISIONS)
    parser.add_argument("--jit", nargs="+", default=["off", "on"], choices=list(JIT),
                        help="XLA settings for Keras inference")
    parser.add_argument("--train-jit", nargs="+", default=["off", "on"], choices=list(JIT),
                        help="XLA settings for train steps")
    parser.add_argument("--train-max-pixels", type=int, default=4 * 512 * 512,
                        help="skip train steps whose batch x height x width is larger (memory: "
                             "FCN-8s and U-Net at 8 x 512 x 512 need over 24 GiB)")


def _add_sections(parser):
    """Which parts of the report run: inference, training, pipeline, serving, runtimes."""
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
    parser.add_argument("--runtimes", action="store_true",
                        help="also time every deployed form of each model: Keras, SavedModel "
                             "(float32, bfloat16), LiteRT (float32, float16, int8) and ONNX "
                             "(float32, int8), with BatchNorm folded and kept, in alternating "
                             "rounds (--rounds)")
    parser.add_argument("--runtime-size", type=int, default=256, metavar="PIXELS",
                        help="image side for --runtimes (batch 1)")


def _add_timing(parser):
    """How each thing is timed, and where the results go."""
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


def _add_baseline(parser):
    """``--baseline``: PyTorch and fcn_tf side by side instead of the full benchmark."""
    parser.add_argument("--baseline", choices=["torch"],
                        help="instead of the full benchmark, time the same networks in PyTorch "
                             "and fcn_tf side by side (FCN-8s, U-Net, DeepLabV3+ MobileNetV2; "
                             "needs the bench extra: pip install -e \".[bench]\")")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of --baseline (each framework once per round)")
    parser.add_argument("--baseline-size", type=int,
                        help="one square size for every --baseline row (default: each row's "
                             "own, as in docs/PERFORMANCE.md)")


def _check(parser, args):
    """Exit through ``parser.error`` on an unknown model or a count below 1."""
    for name in args.models:
        if name not in MODELS:
            parser.error(unknown_name_message("--models", name, list(MODELS)))
    for name, values in (("--steps", [args.steps]), ("--sizes", args.sizes),
                         ("--batches", args.batches), ("--train-sizes", args.train_sizes),
                         ("--train-batches", args.train_batches), ("--rounds", [args.rounds]),
                         ("--runtime-size", [args.runtime_size])):
        if min(values) < 1:
            parser.error(f"{name}: expected positive integers, received {values}.")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker:
        result = worker(args.worker, args)
        with open(args.result_file, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return 0
    if args.baseline:
        return compare(args, argv)

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
    if args.runtimes:
        report["runtimes"] = [{"model": key, **run_worker(f"runtimes:{key}", argv)}
                              for key in args.models]
    report["seconds"] = time.time() - started
    # A second matmul measurement at the end shows how much the machine's speed drifted.
    report["machine_at_end"] = run_worker("machine", argv)
    text = format_report(report)
    if args.runtimes:
        text += "\n" + format_runtimes(report["runtimes"])
    end = report["machine_at_end"]
    if "matmul" in end:
        text += (f"\n\nMatmul at the end: float32 {end['matmul']['float32']['gflops']:.0f}, "
                 f"bfloat16 {end['matmul']['bfloat16']['gflops']:.0f} GFLOP/s "
                 f"(drift of the machine during the run); {report['seconds']:.0f} s in all")
    _print_and_write(text, report, args.out)
    failed = [m["model"] for m in report["models"] if "error" in m]
    return 1 if failed else 0


def _print_and_write(text, report, out):
    """Print the table and write the report as JSON beside earlier ones (never overwritten)."""
    print(text)
    path = output_path(out)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(f"\nWrote {path}")


def compare(args, argv):
    """``--baseline torch``: the side-by-side table, printed and written as JSON."""
    if importlib.util.find_spec("torch") is None:
        print(f"error: {torch_missing_message()}", file=sys.stderr)
        return 2
    started = time.time()
    report = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "argv": argv,
              "cores": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    try:
        report["comparison"] = run_comparison(args, run_worker, argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["seconds"] = time.time() - started
    comparison = report["comparison"]
    text = format_comparison(comparison["table"], comparison["rounds"])
    text += (f"\n\nThreads: " + ", ".join(f"{k} {v}" for k, v in comparison["threads"].items())
             + f"; {report['cores']} cores; {report['seconds']:.0f} s in all")
    for where, error in comparison["errors"].items():
        text += f"\nfailed: {where}: {error}"
    _print_and_write(text, report, args.out)
    return 1 if comparison["errors"] else 0
