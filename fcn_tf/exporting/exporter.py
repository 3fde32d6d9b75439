"""Export a trained model: an in-memory Keras model (:func:`export_model`) or a checkpoint.

The export is a TensorFlow SavedModel folder for TensorFlow Serving (see
docs/SERVING.md) with the normalisation inside, so clients send raw pixels
(:mod:`fcn_tf.exporting.graph`), optionally LiteRT and ONNX files
(:mod:`fcn_tf.exporting.artifacts`) and always ``metadata.json``
(:mod:`fcn_tf.exporting.metadata`). Convolution + BatchNorm pairs are folded
into one convolution in every exported graph (:mod:`fcn_tf.models.folding`)
unless asked not to. The folder is written next to ``out`` and renamed into
place (:mod:`fcn_tf.exporting.folders`).

Example:
    >>> export_checkpoint("runs/default", "models/seg/1", tflite=True)   # doctest: +SKIP
"""

import json
import os

from fcn_tf.exporting.artifacts import (
    check_tflite_size,
    checked_precisions,
    representative_images,
    write_artifacts,
)
from fcn_tf.exporting.folders import check_out, folder_size, written_in_place
from fcn_tf.exporting.graph import export_saved_model
from fcn_tf.exporting.metadata import export_metadata
from fcn_tf.inference.loading import load_keras
from fcn_tf.models.folding import fold_batch_norm as fold
from fcn_tf.models.folding import foldable_pairs
from fcn_tf.precision import model_precision, with_precision
from fcn_tf.runs.files import METADATA_FILE
from fcn_tf.runs.folder import find_run_dir, read_config_dict, read_run_config, resolve_checkpoint
from fcn_tf.runtimes import litert
from fcn_tf.runtimes import onnx as onnx_runtime


def export_model(model, preprocessing, metadata, out, overwrite=False, tflite=False,
                 tflite_precision="float32", tflite_size=None, precision=None,
                 jit_compile=False, sources=(), onnx=False, onnx_precision="float32",
                 representative=None, fold_batch_norm=True):
    """Export an in-memory Keras model as a SavedModel folder ``out`` (and LiteRT / ONNX files).

    Args:
        model: the Keras model (on normalised images).
        preprocessing: its :class:`~fcn_tf.preprocessing.Preprocessing`.
        metadata: the metadata dict (:func:`~fcn_tf.exporting.metadata.export_metadata`).
        out: the SavedModel folder to create.
        overwrite: replace ``out`` if it is an earlier export (else raise).
        tflite: also write LiteRT files (:mod:`fcn_tf.runtimes.litert`).
        tflite_precision: one or several of ``float32``, ``float16``, ``int8``
            (dynamic range), ``int8_full`` (needs ``representative``); each is
            a file (``model.tflite``, ``model_float16.tflite``, ...).
        tflite_size: ``(height, width)`` to fix the LiteRT input size; default free.
        precision: the SavedModel's compute precision, one of
            :data:`fcn_tf.precision.PRECISIONS`; ``None`` keeps the model's.
            ``mixed_bfloat16`` serves about 2x faster on CPUs with bf16 units.
        jit_compile: compile the served network with XLA (recompiles for
            every new input size; worth it only for a few fixed sizes).
        sources: paths ``out`` must never hold (the checkpoint, its run folder).
        onnx: also write ONNX files (:mod:`fcn_tf.runtimes.onnx`).
        onnx_precision: one or several of ``float32``, ``int8`` (dynamic).
        representative: uint8 ``[1, H, W, 3]`` images for ``int8_full``
            (:func:`~fcn_tf.exporting.artifacts.representative_images`).
        fold_batch_norm: fold each convolution + BatchNormalization pair into
            one convolution in every exported graph
            (:func:`fcn_tf.models.folding.fold_batch_norm`; the same function
            up to float32 rounding, no normalisation ops left to run).

    Returns:
        A dict with the export path and the size in bytes of the SavedModel
        (``saved_model_bytes``) and of each other file (``files``).
    """
    out = os.path.abspath(out)
    check_out(out, overwrite, sources)
    tflite_precisions, onnx_precisions = _checked_formats(
        tflite, tflite_precision, tflite_size, onnx, onnx_precision, representative)
    model, folded = _served_form(model, precision, fold_batch_norm)
    channels = int(model.input_shape[-1])
    preprocessing = preprocessing.for_channels(channels)
    with written_in_place(out) as tmp:
        export_saved_model(model, preprocessing, tmp, channels, jit_compile)
        artifacts = write_artifacts(
            tmp, model, preprocessing, channels, tflite_precisions=tflite_precisions,
            tflite_size=tuple(tflite_size) if tflite_size else None,
            onnx_precisions=onnx_precisions, representative=representative)
        metadata = dict(metadata, precision=model_precision(model),
                        jit_compile=bool(jit_compile), batch_norm_folded=folded,
                        artifacts=artifacts)
        with open(os.path.join(tmp, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2)
    return _summary(out, metadata)


def _checked_formats(tflite, tflite_precision, tflite_size, onnx, onnx_precision,
                     representative):
    """``(LiteRT precisions, ONNX precisions)`` to write, after checking the arguments."""
    check_tflite_size(tflite_size)
    tflite_precisions = checked_precisions(tflite_precision, tflite, litert.check_precision)
    onnx_precisions = checked_precisions(onnx_precision, onnx, onnx_runtime.check_precision)
    if "int8_full" in tflite_precisions and representative is None:
        raise ValueError("tflite_precision: int8_full needs representative images from the "
                         "training split; export a run folder (its config names the split).")
    return tflite_precisions, onnx_precisions


def _served_form(model, precision, fold_batch_norm):
    """``(model, folded pairs)``: ``model`` with BatchNorm folded (if asked), in ``precision``.

    ``precision`` ``None`` keeps the model's own.
    """
    folded = len(foldable_pairs(model)) if fold_batch_norm else 0
    if precision is None:
        precision = model_precision(model)
    if folded:
        model = fold(model)  # a float32 copy
    return with_precision(model, precision), folded


def _summary(out, metadata):
    """What :func:`export_model` returns: the folder and the bytes of what it holds."""
    files = {name: os.path.getsize(os.path.join(out, name)) for name in metadata["artifacts"]}
    result = {"export_dir": out, "normalization_source": metadata.get("normalization_source"),
              "saved_model_bytes": folder_size(out) - sum(files.values()), "files": files}
    if litert.file_name("float32") in files:
        result["tflite_bytes"] = files[litert.file_name("float32")]
    return result


def export_checkpoint(checkpoint_path, export_dir, overwrite=False, tflite=False,
                      metadata_from_run=None, tflite_precision="float32", tflite_size=None,
                      precision=None, jit_compile=False, verbose=0, onnx=False,
                      onnx_precision="float32", fold_batch_norm=True):
    """Export a ``.keras`` checkpoint (or run folder) as a SavedModel in ``export_dir``.

    The path-based wrapper of :func:`export_model` used by the CLI: it loads
    the checkpoint with its run folder's config and normalisation
    (:func:`fcn_tf.inference.load_keras`) and refuses to replace a folder
    that holds them. ``int8_full`` LiteRT files are calibrated on the run's
    training images (:func:`~fcn_tf.exporting.artifacts.representative_images`).

    Args:
        checkpoint_path: a ``.keras`` file or a run folder (its best.keras).
        export_dir: the SavedModel folder to create.
        metadata_from_run: the run folder whose config.json and
            preprocessing.json describe the model; default: the checkpoint's.
        tflite_size: a fixed LiteRT input size; default free.
        verbose: print where the normalisation came from.
        overwrite, tflite, tflite_precision, precision, jit_compile, onnx,
        onnx_precision, fold_batch_norm: as :func:`export_model`.
    """
    export_dir = os.path.abspath(export_dir)
    checkpoint = resolve_checkpoint(checkpoint_path)
    run_dir = metadata_from_run or find_run_dir(checkpoint_path)
    sources = [checkpoint, checkpoint_path] + ([run_dir] if run_dir else [])
    check_out(export_dir, overwrite, sources)
    config_dict = read_config_dict(run_dir) if run_dir else None
    config = read_run_config(run_dir, config_dict) if run_dir else None
    loaded = load_keras(checkpoint_path, config, run_dir=run_dir)
    if verbose:
        print(f"Normalisation {loaded.preprocessing.to_dict()} from "
              f"{loaded.preprocessing_source}", flush=True)
    metadata = export_metadata(loaded.keras_model, loaded.preprocessing, checkpoint, config,
                               config_dict, loaded.preprocessing_source)
    representative = _representative(checkpoint_path, config, tflite, tflite_precision,
                                      tflite_size)
    return export_model(loaded.keras_model, loaded.preprocessing, metadata, export_dir,
                        overwrite=overwrite, tflite=tflite, tflite_precision=tflite_precision,
                        tflite_size=tflite_size, precision=precision, jit_compile=jit_compile,
                        sources=sources, onnx=onnx, onnx_precision=onnx_precision,
                        representative=representative, fold_batch_norm=fold_batch_norm)


def _representative(checkpoint_path, config, tflite, tflite_precision, tflite_size):
    """The calibration images of an ``int8_full`` LiteRT file, or ``None`` when none is asked."""
    if not (tflite and "int8_full" in checked_precisions(tflite_precision, True, str)):
        return None
    if config is None:
        raise ValueError(f"tflite_precision: int8_full calibrates on the training images of a "
                         f"run folder's config; {checkpoint_path} has no run folder. Export the "
                         "run folder, or choose int8 (dynamic range).")
    return representative_images(config, size=tflite_size)
