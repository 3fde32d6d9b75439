"""Timing calls, peak memory, threads and the machine's matmul rate."""

import dataclasses
import resource
import statistics
import sys
import time

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
                                min_seconds=min(args.min_seconds, 2.0))
            best[n] = 2 * n**3 / timing.median / 1e9
        rates[dtype] = {"gflops": max(best.values()), "by_size": best}
    return rates
