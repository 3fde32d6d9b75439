"""Compute precision: choosing it for the hardware, and running a built model in another.

``mixed_bfloat16`` computes convolutions in bfloat16 with float32 variables:
on CPUs with bf16 matrix units (AVX512-BF16, AMX) and on recent GPUs it is
about twice as fast as float32, but on a CPU without them (AVX2 only) TensorFlow
emulates bfloat16 and a train step is about 8x *slower* (docs/PERFORMANCE.md).
``auto`` picks the fast one for the machine it runs on. The ``logits`` layer
of every model stays float32, so outputs are float32 in any precision.
"""

import os

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
AUTO = "auto"
# CPU flags (Linux /proc/cpuinfo) of bf16 matrix units that oneDNN uses.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Layers kept float32 in every precision (the model's output; see models/common.py).
FLOAT32_LAYERS = ("logits",)


def check_precision(precision, setting="precision"):
    if precision not in PRECISIONS:
        raise ValueError(f"{setting}: expected one of {', '.join(PRECISIONS)}, "
                         f"received {precision!r}.")
    return precision


def cpu_bf16_flags(cpuinfo="/proc/cpuinfo"):
    """The bf16 matrix-unit flags of this CPU (empty when it has none or is not Linux)."""
    if not os.path.exists(cpuinfo):
        return []
    with open(cpuinfo, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [flag for flag in BF16_CPU_FLAGS if flag in flags]
    return []


def gpu_devices():
    """The logical GPU devices TensorFlow sees here (the package's one GPU check)."""
    return tf.config.list_logical_devices("GPU")


def _gpu_compute_capabilities():
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability") or (0, 0)))
    return capabilities


def resolve_precision(precision, *, cpuinfo="/proc/cpuinfo", gpus=None):
    """``(policy, reason)``: ``precision`` itself, or for ``"auto"`` the fast one here.

    ``auto`` is ``mixed_bfloat16`` on GPUs of compute capability 8.0 or newer
    and on CPUs with AVX512-BF16 or AMX, ``mixed_float16`` on GPUs of compute
    capability 7.x (tensor cores without bfloat16), else ``float32``.
    ``gpus`` (a list of compute capabilities) replaces the detected GPUs in tests.
    """
    if precision != AUTO:
        return check_precision(precision), "as configured"
    gpus = _gpu_compute_capabilities() if gpus is None else list(gpus)
    if gpus:
        oldest = min(gpus)
        if oldest >= (8, 0):
            return "mixed_bfloat16", f"GPU compute capability {oldest[0]}.{oldest[1]} has bf16"
        if oldest >= (7, 0):
            return "mixed_float16", (f"GPU compute capability {oldest[0]}.{oldest[1]} has fp16 "
                                     "tensor cores, no bf16")
        return "float32", (f"GPU compute capability {oldest[0]}.{oldest[1]}: no fast half "
                           "precision")
    flags = cpu_bf16_flags(cpuinfo)
    if flags:
        return "mixed_bfloat16", f"the CPU has bf16 units: {', '.join(flags)}"
    return "float32", ("the CPU has neither avx512_bf16 nor amx_bf16, so bfloat16 would be "
                       "emulated, several times slower")


def layer_precision(layer, precision):
    return "float32" if layer.name in FLOAT32_LAYERS else precision


def model_precision(model):
    """The dtype policy most of ``model``'s layers compute in (its training precision)."""
    names = [layer.dtype_policy.name for layer in model.layers
             if not isinstance(layer, keras.layers.InputLayer)]
    return max(set(names), key=names.count) if names else "float32"


def with_precision(model, precision):
    """``model`` itself if its layers already compute in ``precision``, else a copy that does.

    The copy has the same architecture, layer names and (float32) weights;
    only each layer's dtype policy differs. Used to export a model trained in
    float32 for bfloat16 inference, and a mixed-precision one for TFLite
    (which has no bfloat16 kernels).
    """
    check_precision(precision)
    if all(layer.dtype_policy.name == layer_precision(layer, precision)
           for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)):
        return model

    def convert(layer):
        config = {**layer.get_config(), "dtype": layer_precision(layer, precision)}
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=convert)
    copy.set_weights(model.get_weights())
    return copy
