"""What every runtime reader shares: the runner contract and the choice by file suffix."""

import dataclasses
import importlib
import os

import numpy as np

# File suffix -> runtime name; the reader module is fcn_tf.runtimes.<runtime>.
ARTIFACT_SUFFIXES = {".tflite": "litert", ".onnx": "onnx"}
# Runtime name -> (Python module it needs, the pip requirement that brings it).
RUNTIME_PACKAGES = {
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "onnx": ("onnxruntime", "onnxruntime"),
    "tf2onnx": ("tf2onnx", "tf2onnx"),
    "onnx_format": ("onnx", "onnx"),
}


class RuntimeMissingError(ImportError, ValueError):
    """The runtime a file needs is not installed (an optional extra).

    Also a ``ValueError``, so the command-line tools report it as they report
    any other unusable input, with the install command.
    """


def require(runtime, purpose):
    """Import and return the module of ``runtime``, or raise a message with the install command."""
    module, requirement = RUNTIME_PACKAGES[runtime]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise RuntimeMissingError(
            f"{purpose} needs the {requirement!r} package, which is not installed "
            f"({error}). Install the deployment extra: pip install -e \".[deploy]\" "
            f"(or pip install {requirement})."
        ) from error


@dataclasses.dataclass
class ArtifactRunner:
    """An exported file ready to run: ``runner(images)`` -> ``{"class_ids", "probabilities"}``.

    ``images`` is uint8 ``[B, H, W, 3]`` RGB. ``free_size`` tells whether
    the file takes any height and width; otherwise ``input_size`` is the one
    it takes. ``run`` is the runtime's call for a batch.
    """

    path: str
    runtime: str
    run: object
    free_size: bool
    input_size: tuple | None = None
    max_batch: int | None = None

    def __call__(self, images):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"images: expected uint8 [batch, height, width, 3] RGB for {self.path}, "
                f"received {images.dtype} {list(images.shape)}."
            )
        if not self.free_size and tuple(images.shape[1:3]) != tuple(self.input_size):
            raise ValueError(
                f"images: {self.path} was exported for {self.input_size[0]}x"
                f"{self.input_size[1]} images only, received {images.shape[1]}x"
                f"{images.shape[2]}. Resize them, or export again without a fixed size."
            )
        step = self.max_batch or len(images)
        parts = [self.run(images[i:i + step]) for i in range(0, len(images), step)]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def artifact_file_name(suffix, precision):
    """``model<suffix>`` for float32, ``model_<precision><suffix>`` otherwise."""
    return f"model{suffix}" if precision == "float32" else f"model_{precision}{suffix}"


def check_precision(parameter, precision, precisions):
    """Raise unless ``precision`` is one of ``precisions`` (the message names ``parameter``)."""
    if precision not in precisions:
        raise ValueError(f"{parameter}: expected one of {', '.join(precisions)}, "
                         f"received {precision!r}.")


def artifact_runtime(path):
    """The runtime name of an exported file by its suffix, or ``None``."""
    return ARTIFACT_SUFFIXES.get(os.path.splitext(str(path))[1].lower())


def load_artifact(path):
    """An :class:`ArtifactRunner` for a ``.tflite`` or ``.onnx`` file."""
    runtime = artifact_runtime(path)
    if runtime is None:
        raise ValueError(
            f"model {path}: expected a {' or '.join(ARTIFACT_SUFFIXES)} file, received a "
            f"{os.path.splitext(str(path))[1] or 'suffix-less'} file."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model {path}: no such file.")
    reader = importlib.import_module(f"fcn_tf.runtimes.{runtime}")
    return reader.load(path)
