"""``python -m fcn_tf.bench``: how fast the models run here, against the machine's limits.

Measures in one run, each model in its own process (so its peak memory is its own):

- the machine: float32 and bfloat16 matrix-multiply GFLOP/s with the same
  thread count (the best of a few square sizes);
- per model: FLOPs per image counted from its layers (fcn_tf.bench.flops);
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
  when it runs in bfloat16 instead of float32, over the run's validation split;
- with ``--runtimes``: images/s of each model through the Keras model, its
  SavedModel (float32, bfloat16), LiteRT (float32, float16, int8) and ONNX
  (float32, int8) files, BatchNorm folded and kept, on the same images in
  alternating rounds (:mod:`fcn_tf.bench.runtimes`).

Every figure is the median of at least ``--steps`` timed calls after warm-up,
with the fastest and slowest call as spread. The table is printed and the
results written as JSON (``--out``, never overwriting an earlier file).
"""

from fcn_tf.bench.cli import main
from fcn_tf.bench.report import output_path
from fcn_tf.bench.timing import Timing, time_calls

__all__ = ["Timing", "main", "output_path", "time_calls"]
