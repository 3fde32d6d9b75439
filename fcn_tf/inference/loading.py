"""A model ready for raw pixels: a ``.keras`` file, a run folder, a SavedModel export or an exported file.

:func:`load_for_inference` is the one way in for predict, evaluate and the
fidelity check. Run folders are resolved by :mod:`fcn_tf.runs` (checkpoint,
config, normalisation); exported ``.tflite`` and ``.onnx`` files are read
through their runtimes (:mod:`fcn_tf.runtimes`), with the ``metadata.json``
of the export folder that holds them.

Example:
    >>> model = load_for_inference("runs/default")            # doctest: +SKIP
    >>> logits = model.logits(pixels)                         # doctest: +SKIP
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from fcn_tf.preprocessing import Preprocessing
from fcn_tf.runs.files import METADATA_FILE, read_json
from fcn_tf.runs.folder import (
    check_class_count,
    class_info,
    find_run_dir,
    is_saved_model,
    model_classes,
    read_run_config,
    resolve_checkpoint,
    resolve_preprocessing,
)
from fcn_tf.runtimes import artifact_runtime, load_artifact


@dataclasses.dataclass
class InferenceModel:
    """A segmentation model that takes raw pixels in [0, 255].

    ``logits(pixels)`` maps float32 ``[B, H, W, image_channels]`` pixels to
    ``[B, H, W, K]`` logits (K = 1 for a binary model), normalisation
    included. For an exported ``.tflite`` / ``.onnx`` file, which gives
    probabilities, they are log-probabilities (the file's class ids win
    ties of quantised probabilities), and the pixels are rounded to the
    uint8 the file takes. ``info`` has ``class_names``, ``colors``,
    ``ignore_label``, ``image_channels`` and ``num_classes``.
    """

    logits: object
    info: dict
    preprocessing: object
    preprocessing_source: str
    kind: str
    path: str
    keras_model: object = None
    metadata: dict | None = None

    def normalised_logits(self, images):
        """Logits of images already normalised by :attr:`preprocessing` (what the data pipeline gives).

        A Keras model is called on them as they are. An exported model takes
        raw pixels (normalisation inside), so the batch is turned back into
        pixels first: a padding of 0, the mean pixel once normalised, becomes
        the mean pixel, as the Keras model sees it.
        """
        if self.keras_model is not None:
            return np.asarray(self.keras_model(images, training=False), np.float32)
        pixels = (np.asarray(images, np.float32) * np.float32(self.preprocessing.std)
                  + np.float32(self.preprocessing.mean))
        return self.logits(pixels)


def load_for_inference(path, num_classes=None, config=None):
    """An :class:`InferenceModel` from a ``.keras`` file, a run folder, an export or an exported file.

    Args:
        path: a ``.keras`` file, a run folder, a SavedModel export folder, or
            a ``.tflite`` / ``.onnx`` file of an export folder.
        num_classes: when given, the model must predict this many classes.
        config: for a ``.keras`` file or run folder, the run
            :class:`~fcn_tf.config.run_config.Config` that describes it
            (class names, the class count it must predict, the normalisation
            when no ``preprocessing.json`` is found); default: the config of
            its run folder. An export carries its own metadata.
    """
    if artifact_runtime(path) is not None:
        loaded = load_exported_file(path)
    elif is_saved_model(path):
        loaded = load_saved_model(path)
    else:
        loaded = load_keras(path, config)
    if num_classes is not None and loaded.info["num_classes"] != num_classes:
        raise ValueError(
            f"model {path} predicts {loaded.info['num_classes']} classes, expected "
            f"{num_classes}."
        )
    return loaded


def load_keras(path, config=None, run_dir=None):
    """An :class:`InferenceModel` from a ``.keras`` file or a run folder (see :func:`load_for_inference`).

    Args:
        path: a ``.keras`` file or a run folder (its ``best.keras``).
        config: the run config that describes the model; default: the
            config of ``run_dir``.
        run_dir: the run folder whose ``config.json`` and
            ``preprocessing.json`` describe the model; default: the run
            folder of ``path``, if any.
    """
    checkpoint = resolve_checkpoint(path)
    model = keras.models.load_model(checkpoint, compile=False)
    if config is None:
        found = run_dir or find_run_dir(path)
        config = read_run_config(found) if found else None
    if config is not None:
        check_class_count(model, config.data.num_classes, checkpoint)
    channels = int(model.input_shape[-1])
    info = class_info(model_classes(model), config)
    info["image_channels"] = channels
    preprocessing, source = resolve_preprocessing(run_dir or path, model, config, channels)

    def logits(pixels):
        return np.asarray(model(preprocessing.apply_numpy(pixels), training=False), np.float32)

    return InferenceModel(logits, info, preprocessing, source, "keras", checkpoint, model)


def read_export_metadata(folder, given=None):
    """``(path, document)`` of the ``metadata.json`` of the export ``folder``.

    The one reader of an export's metadata (:mod:`fcn_tf.exporting.metadata`
    writes it): loading, the fidelity check and the server read it here.

    Args:
        folder: a folder written by ``python -m fcn_tf.export``.
        given: what the caller was given, as its error should name it
            (``"model m.tflite"``); default ``"folder FOLDER"``.

    Raises:
        FileNotFoundError: ``folder`` has no ``metadata.json``.
        fcn_tf.runs.files.DamagedFileError: it is not JSON.
    """
    meta_path = os.path.join(folder, METADATA_FILE)
    metadata = read_json(meta_path)
    if metadata is None:
        raise FileNotFoundError(
            f"{given or f'folder {folder}'}: no {METADATA_FILE} in {folder}; export it with "
            "python -m fcn_tf.export, which writes the class names, colours and normalisation "
            "there."
        )
    return meta_path, metadata


def _class_info(metadata):
    return {k: metadata[k] for k in ("num_classes", "class_names", "colors", "ignore_label",
                                     "image_channels")}


def load_exported_file(path):
    """An :class:`InferenceModel` from a ``.tflite`` or ``.onnx`` file written by :mod:`fcn_tf.exporting`."""
    path = os.path.abspath(path)
    runner = load_artifact(path)
    meta_path, metadata = read_export_metadata(os.path.dirname(path), f"model {path}")
    info = _class_info(metadata)
    channels = int(info["image_channels"])

    def logits(pixels):
        pixels = np.clip(np.round(np.asarray(pixels, np.float32)), 0, 255).astype(np.uint8)
        rgb = np.repeat(pixels, 3, axis=-1) if channels == 1 else pixels  # gray: luma of itself
        out = runner(rgb)
        logits = np.log(np.maximum(out["probabilities"], np.float32(1e-30)))
        # Quantised probabilities tie often; the file's own class id breaks ties.
        chosen = out["class_ids"][..., None].astype(np.int64)
        np.put_along_axis(logits, chosen, np.take_along_axis(logits, chosen, -1) + 1e-4, -1)
        return logits

    preprocessing = Preprocessing.from_dict(metadata["normalization"])
    return InferenceModel(logits, info, preprocessing, f"{meta_path} (inside the file)",
                          runner.runtime, path, metadata=metadata)


def load_saved_model(path):
    """An :class:`InferenceModel` from a folder written by :mod:`fcn_tf.exporting`."""
    meta_path, metadata = read_export_metadata(path, f"model {path}")
    loaded = tf.saved_model.load(path)
    if not hasattr(loaded, "logits"):
        raise ValueError(f"model {path}: this SavedModel has no 'logits' function; re-export "
                         "it with python -m fcn_tf.export.")

    def logits(pixels):
        return loaded.logits(tf.constant(np.asarray(pixels, np.float32))).numpy()

    preprocessing = Preprocessing.from_dict(metadata["normalization"])
    info = _class_info(metadata)
    return InferenceModel(logits, info, preprocessing, f"{meta_path} (inside the graph)",
                          "saved_model", path, metadata=metadata)
