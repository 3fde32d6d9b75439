"""``train.jit_compile: "auto"``: XLA for training where it is measured faster.

Whether XLA speeds up a train step depends on the machine and the network:
on an AVX2-only CPU it made the 16-filter U-Net of an earlier
``config.json`` 1.5x faster and DeepLabV3+ MobileNetV2 2x slower (depthwise
convolutions); on a CPU with bf16 units it made float32 training 6-15% slower
and bfloat16 training 2x slower (docs/PERFORMANCE.md). So ``auto`` does not guess: before the first
epoch it times a few train steps of a throw-away copy of the model, with and
without XLA, on a batch of the training shape, and keeps XLA only when it is
at least ``MARGIN`` faster. The copy has its own weights and optimizer, so
the run itself is untouched. The one case it does not time is bfloat16
training on a machine without a GPU: XLA was slower there for every model on
every CPU measured (1.3-2x; it fails outright for DeepLabV3+), and the two
compilations would cost about 15 s of the default run for nothing. The
decision is stored in the run's ``state.json`` and reused when the run
resumes.
"""

import time

import keras
import numpy as np

from fcn_tf.precision import gpu_devices

MARGIN = 0.10  # XLA must save at least 10% of a step to be kept
TIMED_STEPS = 3


def measure_train_step(model, optimizer_fn, loss, batch_shape, jit_compile, steps=TIMED_STEPS):
    """Seconds of the fastest of ``steps`` train steps of a copy of ``model`` (after a first)."""
    copy = keras.models.clone_model(model)
    copy.compile(optimizer=optimizer_fn(), loss=loss, jit_compile=jit_compile)
    x = np.zeros(batch_shape, np.float32)
    y = np.zeros(batch_shape[:3], np.int32)  # class 0 is valid for every model
    copy.train_on_batch(x, y)  # traces and, with XLA, compiles
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        copy.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return min(times)


def _has_gpu():
    return bool(gpu_devices())


def choose_jit_compile(config, model, optimizer_fn, loss, precision="float32"):
    """``(jit_compile, record)`` for ``config.train.jit_compile`` (true, false or "auto").

    ``record`` is what goes into ``state.json``: the choice, why, and the
    measured step times when ``auto`` measured them. ``precision`` is the
    resolved Keras policy the run trains in.
    """
    setting = config.train.jit_compile
    if setting != "auto":
        return setting, {"jit_compile": setting, "reason": "as configured"}
    if config.train.distribute != "none":
        return False, {"jit_compile": False, "reason": "auto: not measured under "
                       f"train.distribute {config.train.distribute!r}; XLA off"}
    if precision == "mixed_bfloat16" and not _has_gpu():
        return False, {"jit_compile": False, "reason": "auto: not measured for mixed_bfloat16 "
                       "on a CPU, where XLA made every model's train step 1.3-2x slower; XLA off"}
    height, width = config.data.crop_size
    shape = (config.train.batch_size, height, width, config.data.image_channels)
    seconds = {"off": measure_train_step(model, optimizer_fn, loss, shape, False),
               "on": measure_train_step(model, optimizer_fn, loss, shape, True)}
    chosen = seconds["on"] < (1 - MARGIN) * seconds["off"]
    ratio = seconds["off"] / seconds["on"]
    reason = (f"auto: a train step took {seconds['off'] * 1e3:.0f} ms without XLA and "
              f"{seconds['on'] * 1e3:.0f} ms with it ({ratio:.2f}x); XLA "
              + ("on" if chosen else f"off (kept only when {1 / (1 - MARGIN):.2f}x or more)"))
    return chosen, {"jit_compile": chosen, "reason": reason, "step_seconds": seconds}
