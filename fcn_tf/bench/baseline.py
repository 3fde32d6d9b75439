"""``python -m fcn_tf.bench --baseline torch``: fcn_tf against PyTorch, side by side.

The same networks (:mod:`fcn_tf.bench.torch_models`: same layers and
parameter counts) are timed in both frameworks on this machine, in rounds
that alternate which framework goes first, each framework and precision in a
fresh process. Every row is an inference call or a train step:

- inference: ``model(x, training=False)`` in a ``tf.function`` (XLA off) vs
  ``model.eval()`` under ``torch.inference_mode()``;
- train step: ``train_on_batch`` with the package's cross-entropy and SGD with
  momentum 0.9 vs forward, ``F.cross_entropy``, backward and ``SGD.step``.

Precisions: ``float32`` against float32, and ``mixed_bfloat16`` (Keras'
policy: bfloat16 compute, float32 weights) against PyTorch's
``torch.autocast("cpu", dtype=torch.bfloat16)``.

The ratio of a row is fcn_tf's images/s over PyTorch's, from the median over
rounds of each; the spread is the lowest and highest ratio of a single round.
"""

import dataclasses
import os
import sys

from fcn_tf.bench.measurements import NUM_CLASSES, build
from fcn_tf.bench.timing import time_calls
from fcn_tf.losses import SegmentationCrossEntropy

FRAMEWORKS = ("fcn_tf", "torch")


@dataclasses.dataclass(frozen=True)
class Row:
    """One comparison: a model, inference or a train step, a square size and a batch."""

    model: str
    kind: str
    size: int
    batch: int

    @property
    def key(self):
        return f"{self.model} {self.kind} {self.size}x{self.size} batch {self.batch}"


# The rows of issue 20's table (sizes and batches as measured there).
ROWS = (
    Row("fcn8s", "inference", 224, 1),
    Row("fcn8s", "train", 224, 2),
    Row("unet", "inference", 256, 1),
    Row("unet", "train", 256, 2),
    Row("deeplabv3plus_mobilenet_v2", "inference", 512, 1),
    Row("deeplabv3plus_mobilenet_v2", "train", 256, 2),
)


def selected_rows(args):
    """The rows of ``--models``, each at ``--baseline-size`` if given."""
    rows = [row for row in ROWS if row.model in args.models]
    if args.baseline_size:
        rows = [dataclasses.replace(row, size=args.baseline_size) for row in rows]
    return rows


def _fcn_tf_calls(row, precision, rng):
    """A blocking zero-argument call that runs one inference or train step in fcn_tf."""
    import keras
    import numpy as np
    import tensorflow as tf

    model = build(row.model, precision)
    x = rng.random((row.batch, row.size, row.size, 3), np.float32)
    if row.kind == "inference":
        infer = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
        images = tf.constant(x)
        return model, lambda: infer(images).numpy()
    model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9),
                  loss=SegmentationCrossEntropy(ignore_label=255), jit_compile=False)
    y = rng.integers(0, NUM_CLASSES, (row.batch, row.size, row.size)).astype(np.int32)
    return model, lambda: model.train_on_batch(x, y)


def _torch_calls(row, precision, rng):
    """The same as :func:`_fcn_tf_calls` in PyTorch (NCHW, the framework's default layout)."""
    import numpy as np
    import torch
    from torch.nn import functional as F

    from fcn_tf.bench.torch_models import build_torch_model

    model = build_torch_model(row.model, NUM_CLASSES)
    x = torch.from_numpy(rng.random((row.batch, 3, row.size, row.size), np.float32))
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16,  # noqa: E731
                                      enabled=precision == "mixed_bfloat16")
    if row.kind == "inference":
        model.eval()

        def infer():
            with torch.inference_mode(), autocast():
                return model(x).float().numpy()

        return model, infer
    model.train()
    y = torch.from_numpy(rng.integers(0, NUM_CLASSES, (row.batch, row.size, row.size)))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(x), y, ignore_index=255)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return model, step


def comparison_worker(framework, precision, args):
    """Time every selected row in one framework and precision; runs in its own process."""
    import numpy as np

    if framework == "torch":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        threads = torch.get_num_threads()
    else:
        import tensorflow as tf

        threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    calls = _torch_calls if framework == "torch" else _fcn_tf_calls
    rng = np.random.default_rng(0)
    out = {"framework": framework, "precision": precision, "threads": threads, "rows": {}}
    for row in selected_rows(args):
        model, call = calls(row, precision, rng)
        timing = time_calls(call, args.steps, args.warmup, args.min_seconds)
        rate = row.batch / timing.median
        out["rows"][row.key] = {"images_per_s": rate, **timing.to_dict()}
        print(f"  {framework:<7}{precision:<15}{row.key:<54}{rate:8.2f} images/s",
              file=sys.stderr, flush=True)
        del model, call
    return out


def _median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def summarise(rounds, rows, precisions):
    """Per row and precision: median images/s of each framework, their ratio and its spread."""
    table = []
    for row in rows:
        for precision in precisions:
            rates = {f: [] for f in FRAMEWORKS}
            for measured in rounds:
                for framework in FRAMEWORKS:
                    entry = measured.get((framework, precision), {}).get("rows", {}).get(row.key)
                    if entry:
                        rates[framework].append(entry["images_per_s"])
            complete = min(len(v) for v in rates.values())
            if not complete:
                table.append({"row": row.key, "precision": precision, "error": "not measured"})
                continue
            per_round = [a / b for a, b in zip(rates["fcn_tf"], rates["torch"])]
            fcn_tf, torch = _median(rates["fcn_tf"]), _median(rates["torch"])
            table.append({"row": row.key, "precision": precision, "fcn_tf_images_per_s": fcn_tf,
                          "torch_images_per_s": torch, "ratio": fcn_tf / torch,
                          "round_ratios": per_round})
    return table


def format_comparison(table, rounds):
    header = f"{'row':<54}{'precision':<16}{'fcn_tf':>9}{'torch':>9}{'ratio':>8}  rounds"
    lines = [f"fcn_tf / PyTorch images/s, median of {rounds} alternating rounds "
             "(rounds: the ratio of each)", "", header, "-" * len(header)]
    for entry in table:
        if "error" in entry:
            lines.append(f"{entry['row']:<54}{entry['precision']:<16}  {entry['error']}")
            continue
        spread = ", ".join(f"{r:.2f}" for r in entry["round_ratios"])
        lines.append(f"{entry['row']:<54}{entry['precision']:<16}"
                     f"{entry['fcn_tf_images_per_s']:>9.2f}{entry['torch_images_per_s']:>9.2f}"
                     f"{entry['ratio']:>7.2f}x  {spread}")
    return "\n".join(lines)


def torch_missing_message():
    return ("--baseline torch needs PyTorch, which is an optional dependency of the "
            "benchmark: install it with `pip install -e \".[bench]\"` (or `pip install torch`).")


def run_comparison(args, run_worker, argv):
    """Alternate fcn_tf and PyTorch workers for ``args.rounds`` rounds; return the report."""
    rows = selected_rows(args)
    if not rows:
        raise ValueError(f"--baseline torch compares only {', '.join(sorted({r.model for r in ROWS}))}; "
                         f"--models selected none of them ({', '.join(args.models)}).")
    rounds = []
    for index in range(args.rounds):
        order = FRAMEWORKS if index % 2 == 0 else FRAMEWORKS[::-1]
        measured = {}
        for framework in order:
            for precision in args.precisions:
                print(f"round {index + 1}/{args.rounds}: {framework} {precision}",
                      file=sys.stderr, flush=True)
                measured[(framework, precision)] = run_worker(
                    f"compare:{framework}:{precision}", argv)
        rounds.append(measured)
    errors = {f"round {i + 1} {f} {p}": m["error"] for i, r in enumerate(rounds)
              for (f, p), m in r.items() if "error" in m}
    table = summarise(rounds, rows, args.precisions)
    threads = {f"{f} {p}": m.get("threads") for (f, p), m in rounds[0].items()}
    return {"rows": [dataclasses.asdict(r) for r in rows], "rounds": args.rounds,
            "threads": threads, "table": table, "errors": errors,
            "raw": [{f"{f} {p}": m for (f, p), m in r.items()} for r in rounds]}
