"""The model a server serves: find the SavedModel, load it, run it, describe it.

``resolve_model_dir`` accepts what ``python -m fcn_tf.serve MODEL`` accepts:
an export folder (``saved_model.pb`` + ``metadata.json``), a TensorFlow
Serving base folder (``NAME/1/``, ``NAME/2/``: the highest version is served,
as TensorFlow Serving's default "latest" policy does) or a run folder (its
``export/``). :class:`ServedModel` holds the loaded SavedModel and runs it.

Besides the SavedModel's own signatures (``serving_default``: uint8 pixels,
``serving_bytes``: encoded images) the server offers two of its own,
``serving_png`` and ``serving_bytes_png``, with the same inputs and two small
outputs: ``class_ids_png_bytes`` (the class ids as a palette PNG, pixel value =
class id, palette = class colours; base64 in JSON, as TensorFlow Serving sends
every ``..._bytes`` output) and ``class_pixel_counts`` (int64 ``[classes]``).

Example:
    >>> from fcn_tf.serve.model import load_served_model   # doctest: +SKIP
    >>> served = load_served_model("runs/default")          # doctest: +SKIP
    >>> served.run(images)["class_ids"].shape               # doctest: +SKIP
"""

import dataclasses
import io
import os
import re

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from fcn_tf.data.palette import class_ids_image
from fcn_tf.inference.loading import read_export_metadata
from fcn_tf.runs.files import CONFIG_FILE, EXPORT_DIR
from fcn_tf.runs.folder import is_saved_model
from fcn_tf.signatures import (
    SIGNATURE_BYTES,
    SIGNATURE_BYTES_PNG,
    SIGNATURE_IMAGES,
    SIGNATURE_PNG,
)

PNG_OUTPUT = "class_ids_png_bytes"
COUNTS_OUTPUT = "class_pixel_counts"
DEFAULT_WARMUP_SIZE = (64, 64)
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclasses.dataclass(frozen=True)
class Signature:
    """One servable signature: its input tensor and output tensors.

    ``inputs`` and ``outputs`` map a tensor name to ``(dtype, shape)`` in
    TensorFlow Serving's terms (``"DT_UINT8"``, ``"DT_FLOAT"``, ``[-1, -1, -1, 3]``).
    ``encoded`` is true for the string input of encoded images; ``png`` for
    the server's PNG signatures.
    """

    name: str
    input_name: str
    inputs: dict
    outputs: dict
    encoded: bool
    png: bool


def run_export_dir(run_dir):
    """The SavedModel folder of a training run folder: ``RUN/export``.

    Raises ``FileNotFoundError`` naming the run folder and the export command
    when the run has no export.
    """
    export_dir = os.path.join(run_dir, EXPORT_DIR)
    if not is_saved_model(export_dir):
        raise FileNotFoundError(
            f"MODEL {run_dir}: a run folder without a SavedModel in {export_dir}. Export it "
            f"first: python -m fcn_tf.export --checkpoint {run_dir} --out {export_dir}")
    return export_dir


def resolve_model_dir(path):
    """``(export_dir, version, default_name)`` for an export, base or run folder.

    Args:
        path: an export folder (``saved_model.pb``), a TensorFlow Serving base
            folder with numbered versions (the highest is taken) or a run
            folder (its ``export/``).

    Example:
        >>> resolve_model_dir("models/seg")   # doctest: +SKIP
        ('/abs/models/seg/2', 2, 'seg')
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"MODEL {path}: no such folder. Expected an export folder (saved_model.pb and "
            "metadata.json), a TensorFlow Serving base folder (NAME/1/, NAME/2/, ...) or a "
            "run folder (with export/).")
    base = os.path.basename(path)
    if is_saved_model(path):
        if base.isdigit():
            return path, int(base), os.path.basename(os.path.dirname(path))
        return path, 1, base
    versions = sorted(int(n) for n in os.listdir(path)
                      if n.isdigit() and is_saved_model(os.path.join(path, n)))
    if versions:
        return os.path.join(path, str(versions[-1])), versions[-1], base
    if os.path.isfile(os.path.join(path, CONFIG_FILE)):
        return run_export_dir(path), 1, base
    raise FileNotFoundError(
        f"MODEL {path}: found no saved_model.pb in it, no numbered version folders holding "
        f"one, and no {CONFIG_FILE} of a run folder. Give an export folder "
        "(python -m fcn_tf.export --out DIR), a base folder such as models/seg with "
        "models/seg/1/, or a run folder.")


def model_name(name):
    """``name`` as a URL-safe model name (letters, digits, ``_.-``)."""
    cleaned = _NAME.sub("_", name).strip("_") or "model"
    return cleaned


def _tf_dtype_name(dtype):
    """TensorFlow's ``DataType`` enum name of a ``tf.DType``: ``DT_FLOAT``, ``DT_UINT8``..."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def encode_class_png(class_ids, colors):
    """PNG bytes of a ``[H, W]`` class-id map.

    Up to 256 classes: a palette PNG (pixel value = class id, palette = the
    class colours). More classes: a 16-bit grayscale PNG of the ids
    (:func:`fcn_tf.data.palette.class_ids_image`).
    """
    buffer = io.BytesIO()
    class_ids_image(class_ids, colors).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class ServedModel:
    """A loaded SavedModel with its metadata, signatures and a batch runner.

    Args:
        export_dir: the SavedModel folder.
        name: the model name in URLs (``/v1/models/NAME``).
        version: the version number it is served as.
    """

    def __init__(self, export_dir, name, version):
        _, self.metadata = read_export_metadata(export_dir, f"MODEL {export_dir}")
        self.path = export_dir
        self.name = name
        self.version = int(version)
        self._loaded = tf.saved_model.load(export_dir)
        missing = [s for s in (SIGNATURE_IMAGES, SIGNATURE_BYTES)
                   if s not in self._loaded.signatures]
        if missing:
            raise ValueError(
                f"MODEL {export_dir}: the SavedModel lacks the signature(s) {missing}; it has "
                f"{sorted(self._loaded.signatures)}. Re-export it with python -m fcn_tf.export.")
        self._images_fn = self._loaded.signatures[SIGNATURE_IMAGES]
        self.class_names = list(self.metadata["class_names"])
        self.colors = [list(c) for c in self.metadata["colors"]]
        self.num_classes = int(self.metadata["num_classes"])
        self.signatures = self._describe_signatures()

    def _describe_signatures(self):
        signatures = {}
        for name in (SIGNATURE_IMAGES, SIGNATURE_BYTES):
            fn = self._loaded.signatures[name]
            inputs = {key: (_tf_dtype_name(spec.dtype), list(spec.shape.as_list()))
                      for key, spec in fn.structured_input_signature[1].items()}
            outputs = {key: (_tf_dtype_name(spec.dtype), list(spec.shape.as_list()))
                       for key, spec in fn.structured_outputs.items()}
            inputs = {k: (d, [-1 if v is None else v for v in s]) for k, (d, s) in inputs.items()}
            outputs = {k: (d, [-1 if v is None else v for v in s])
                       for k, (d, s) in outputs.items()}
            signatures[name] = Signature(name, next(iter(inputs)), inputs, outputs,
                                         encoded=name == SIGNATURE_BYTES, png=False)
        png_outputs = {PNG_OUTPUT: ("DT_STRING", [-1]),
                       COUNTS_OUTPUT: ("DT_INT64", [-1, self.num_classes])}
        for name, source in ((SIGNATURE_PNG, SIGNATURE_IMAGES),
                             (SIGNATURE_BYTES_PNG, SIGNATURE_BYTES)):
            base = signatures[source]
            signatures[name] = Signature(name, base.input_name, base.inputs, png_outputs,
                                         encoded=base.encoded, png=True)
        return signatures

    def run(self, images):
        """``{"class_ids", "probabilities"}`` numpy arrays of uint8 ``[B, H, W, 3]`` images."""
        out = self._images_fn(images=tf.constant(images))
        return {key: value.numpy() for key, value in out.items()}

    def png_outputs(self, class_ids):
        """The PNG signatures' outputs for ``[B, H, W]`` class ids."""
        pngs = [encode_class_png(ids, self.colors) for ids in class_ids]
        counts = np.stack([np.bincount(ids.reshape(-1), minlength=self.num_classes)
                           [: self.num_classes] for ids in class_ids]).astype(np.int64)
        return {PNG_OUTPUT: pngs, COUNTS_OUTPUT: counts}

    def warmup_size(self):
        """The training crop size from the metadata's config, else 64 x 64."""
        config = self.metadata.get("training_config") or {}
        crop = (config.get("data") or {}).get("crop_size")
        if isinstance(crop, list) and len(crop) == 2 and all(isinstance(v, int) for v in crop):
            return tuple(crop)
        return DEFAULT_WARMUP_SIZE

    def warm_up(self):
        """Run one image of :meth:`warmup_size` through the model and the PNG encoder."""
        height, width = self.warmup_size()
        out = self.run(np.zeros((1, height, width, 3), np.uint8))
        self.png_outputs(out["class_ids"])
        return out["class_ids"].shape


def load_served_model(path, name=None):
    """A :class:`ServedModel` from an export, base or run folder (see :func:`resolve_model_dir`).

    Args:
        path: the MODEL argument of ``python -m fcn_tf.serve``.
        name: the model name in URLs; default the base or run folder's name.
    """
    export_dir, version, default_name = resolve_model_dir(path)
    return ServedModel(export_dir, model_name(name or default_name), version)
