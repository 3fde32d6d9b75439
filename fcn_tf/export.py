"""``python -m fcn_tf.export --checkpoint PATH --out DIR [--tflite] [--onnx] [--check SPLIT]``.

Exports a trained model as a TensorFlow SavedModel for TensorFlow Serving
(see docs/SERVING.md), and optionally as LiteRT and ONNX files, all with the
normalisation inside so clients send raw pixels:

- ``serving_default``: ``images`` uint8 ``[batch, height, width, 3]`` (any
  height and width) -> ``class_ids`` int32 ``[batch, height, width]`` and
  ``probabilities`` float32 ``[batch, height, width, classes]``.
- ``serving_bytes``: ``image_bytes`` string ``[batch]`` of encoded JPEG / PNG
  (/ BMP / GIF) images, all of one size -> the same outputs.
- a non-signature function ``logits`` (Python ``tf.saved_model.load`` only):
  float32 pixels ``[batch, height, width, input_channels]`` in [0, 255] ->
  logits, used by ``python -m fcn_tf.predict`` for test-time augmentation.
- ``--tflite``: one LiteRT file per ``--tflite-precision`` (``model.tflite``,
  ``model_float16.tflite``, ``model_int8.tflite``, ``model_int8_full.tflite``),
  uint8 ``[1, H, W, 3]`` with free height and width unless ``--tflite-size``;
  ``--onnx``: ``model.onnx`` / ``model_int8.onnx``, uint8 ``[batch, H, W, 3]``
  (:mod:`fcn_tf.runtimes`). Each has the same two outputs.

Grayscale models (``image_channels`` 1) take the same 3-channel RGB inputs;
the graph converts them to luma (ITU-R 601-2, as the data pipeline does).
A two-class model with one binary logit gives ``probabilities`` ``[1 - p, p]``.
Convolution + BatchNorm pairs are folded into one convolution in every
exported graph (:mod:`fcn_tf.models.folding`; ``--no-fold-batch-norm`` keeps
them).

``metadata.json`` next to ``saved_model.pb`` holds the model name, class
names and colours, input channels, normalisation, training config and what
each LiteRT / ONNX file takes and gives. ``--check SPLIT`` then scores every
file against the checkpoint on that split of the run's data
(:mod:`fcn_tf.fidelity`) and writes ``fidelity.json``.

The export is written to a temporary folder next to ``--out`` and renamed
into place, so a failed export never leaves half a model.
"""

import argparse
import json
import os
import re
import shutil
import sys

import keras
import numpy as np
import tensorflow as tf

from fcn_tf.data import DatasetError
from fcn_tf.fidelity import (
    FIDELITY_FILE,
    MAX_CHANGED,
    check_export,
    format_fidelity,
    raw_rgb_batches,
)
from fcn_tf.models.folding import fold_batch_norm as fold
from fcn_tf.models.folding import foldable_pairs
from fcn_tf.outputs import logits_to_classes, logits_to_probabilities
from fcn_tf.precision import PRECISIONS, model_precision, with_precision
from fcn_tf.preprocessing import rgb_to_luma
from fcn_tf.runs.files import METADATA_FILE, TMP_PREFIX, atomic_write_json
from fcn_tf.runs.folder import (
    backbone_of_model,
    class_info,
    find_run_dir,
    is_saved_model,
    model_classes,
    read_config_dict,
    read_run_config,
    resolve_checkpoint,
    resolve_preprocessing,
)
from fcn_tf.runs.lock import pid_alive
from fcn_tf.runtimes import litert
from fcn_tf.runtimes import onnx as onnx_runtime
from fcn_tf.signatures import SIGNATURE_BYTES, SIGNATURE_IMAGES
from fcn_tf.utils.cli import report_error
from fcn_tf.utils.files import make_temp_dir

TFLITE_FILE = litert.file_name("float32")
TFLITE_PRECISIONS = litert.PRECISIONS
ONNX_FILE = onnx_runtime.file_name("float32")
# Training images that calibrate the activation ranges of an int8_full file.
REPRESENTATIVE_COUNT = 32
METADATA_VERSION = 2
# Node names that appear in the error of a wrongly shaped input.
SHAPE_CHECK_IMAGES = "images_must_be_batch_height_width_3_uint8_rgb"
SHAPE_CHECK_PIXELS = "pixels_must_be_batch_height_width_channels_float32"
SHAPE_CHECK_BYTES = "image_bytes_must_be_a_list_of_encoded_images_not_one_string"


def _serving_module(model, preprocessing, channels, jit_compile=False):
    """A ``tf.Module`` holding the model (weights stored once) and its serving functions.

    ``jit_compile`` compiles the network with XLA: faster per call at a fixed
    size, but every new input size is compiled again (seconds; see
    docs/PERFORMANCE.md), so it is off unless the served sizes are few.
    """
    def outputs(logits):
        return {"class_ids": logits_to_classes(logits),
                "probabilities": logits_to_probabilities(logits)}

    # One traced function holds the network; every signature calls it, so the
    # model is traced (and stored in the graph) once.
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32)],
                 jit_compile=jit_compile)
    def logits_of_pixels(pixels):
        return tf.cast(model(preprocessing.apply(pixels), training=False), tf.float32)

    def from_rgb(images):
        pixels = tf.cast(rgb_to_luma(images) if channels == 1 else images, tf.float32)
        return outputs(logits_of_pixels(pixels))

    def decode(data, first_shape):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        same = tf.reduce_all(tf.equal(tf.shape(image)[:2], first_shape))
        with tf.control_dependencies([tf.debugging.Assert(same, [
                "serving_bytes: every image of one request must have the same height and "
                "width; the first is", first_shape, "this one is", tf.shape(image)[:2],
                ". Send images of different sizes in separate requests."])]):
            return tf.identity(image)

    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve_images(images):
        # The signature's shape is not enforced on a loaded model: check it at run time.
        images = tf.ensure_shape(images, [None, None, None, 3], name=SHAPE_CHECK_IMAGES)
        with tf.control_dependencies([tf.debugging.assert_positive(
                tf.shape(images)[:3],
                message="serving_default: images must have batch, height and width >= 1 "
                        "([batch, height, width, 3] uint8); received an empty batch or image")]):
            images = tf.identity(images)
        return from_rgb(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        # The signature's shape is not enforced on a loaded model: a single string
        # would otherwise fail deep inside map_fn ("slice index 0").
        image_bytes = tf.ensure_shape(image_bytes, [None], name=SHAPE_CHECK_BYTES)
        tf.debugging.assert_positive(
            tf.size(image_bytes),
            message="serving_bytes: received an empty batch; send at least one encoded image.")
        first = tf.io.decode_image(image_bytes[0], channels=3, expand_animations=False)
        images = tf.map_fn(lambda data: decode(data, tf.shape(first)[:2]), image_bytes,
                           fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        return from_rgb(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, channels], tf.float32,
                                                name="pixels")])
    def logits(pixels):
        pixels = tf.ensure_shape(pixels, [None, None, None, channels], name=SHAPE_CHECK_PIXELS)
        return logits_of_pixels(pixels)

    module.serve_images = serve_images
    module.serve_bytes = serve_bytes
    module.logits = logits
    module.from_rgb = from_rgb
    return module


def export_saved_model(model, preprocessing, path, channels=None, jit_compile=False):
    """Save ``model`` with its serving signatures to ``path``; return the module."""
    channels = channels or int(model.input_shape[-1])
    module = _serving_module(model, preprocessing.for_channels(channels), channels, jit_compile)
    signatures = {SIGNATURE_IMAGES: module.serve_images.get_concrete_function(),
                  SIGNATURE_BYTES: module.serve_bytes.get_concrete_function()}
    tf.saved_model.save(module, path, signatures=signatures)
    return module


def float32_copy(model):
    """``model`` itself if every layer computes in float32, else a float32 copy.

    LiteRT and ONNX have no bfloat16 kernels, so a model trained with a mixed
    policy (``mixed_bfloat16``/``mixed_float16``; its variables are float32
    anyway) is rebuilt with float32 layers and given the same weights before
    conversion.
    """
    return with_precision(model, "float32")


def representative_images(config, count=REPRESENTATIVE_COUNT, size=None):
    """Up to ``count`` uint8 ``[1, H, W, 3]`` training images, for ``int8_full`` calibration.

    Taken in file order from ``config``'s training split at full resolution
    (or resized to ``size``), as the exported graph sees them: raw RGB.
    """
    images = []
    for image, _ in raw_rgb_batches(config, "train").take(count):
        if size:
            image = tf.image.resize(image, size)
        images.append(np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8))
    return images


def _write_artifacts(folder, model, preprocessing, channels, *, tflite_precisions=(),
                     tflite_size=None, onnx_precisions=(), representative=None):
    """Write the LiteRT and ONNX files into ``folder``; return their metadata entries."""
    if not tflite_precisions and not onnx_precisions:
        return {}
    module = _serving_module(float32_copy(model), preprocessing, channels)
    num_classes = 2 if int(model.output_shape[-1]) == 1 else int(model.output_shape[-1])
    entries = {}
    for precision in tflite_precisions:
        name = litert.file_name(precision)
        data = litert.convert(module.model, module.from_rgb, precision, tflite_size,
                              representative)
        size = f"{tflite_size[0]}, {tflite_size[1]}" if tflite_size else "height, width"
        entries[name] = {"runtime": "litert", "precision": precision,
                         "free_size": tflite_size is None,
                         "input": f"images uint8 [1, {size}, 3] RGB",
                         "outputs": {"class_ids": f"int32 [1, {size}]",
                                     "probabilities": f"float32 [1, {size}, {num_classes}]"}}
        _write_bytes(os.path.join(folder, name), data)
    for precision in onnx_precisions:
        name = onnx_runtime.file_name(precision)
        _write_bytes(os.path.join(folder, name), onnx_runtime.convert(module.from_rgb, precision))
        entries[name] = {"runtime": "onnx", "precision": precision, "free_size": True,
                         "opset": onnx_runtime.OPSET,
                         "input": "images uint8 [batch, height, width, 3] RGB",
                         "outputs": {"class_ids": "int32 [batch, height, width]",
                                     "probabilities": "float32 [batch, height, width, "
                                                      f"{num_classes}]"}}
    return entries


def _write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def export_metadata(model, preprocessing, checkpoint, config=None, config_dict=None,
                    normalization_source=None):
    """The metadata.json contents: classes, colours, channels, normalisation, config.

    Args:
        model: the Keras model being exported.
        preprocessing: its :class:`~fcn_tf.preprocessing.Preprocessing`.
        checkpoint: the ``.keras`` file it came from (recorded as the source).
        config: the run :class:`~fcn_tf.config.run_config.Config`, or ``None``
            (default class names and colours).
        config_dict: the raw config document; default ``config.to_dict()``.
        normalization_source: where the normalisation came from (a sentence).
    """
    outputs = int(model.output_shape[-1])
    info = class_info(model_classes(model), config)
    channels = int(model.input_shape[-1])
    if config_dict is None and config is not None:
        config_dict = config.to_dict()
    return {
        "format_version": METADATA_VERSION,
        "model_name": config.model.name if config else model.name,
        "backbone": (config.model.backbone if config and config.model.backbone
                     else backbone_of_model(model)),
        "keras_model_name": model.name,
        "num_classes": info["num_classes"],
        "logit_channels": outputs,
        "class_names": info["class_names"],
        "colors": info["colors"],
        "ignore_label": info["ignore_label"],
        "image_channels": channels,
        "normalization": preprocessing.to_dict(),
        "normalization_source": normalization_source or "the exporting program",
        "signatures": {
            SIGNATURE_IMAGES: {"inputs": {"images": "uint8 [batch, height, width, 3] RGB"},
                               "outputs": {"class_ids": "int32 [batch, height, width]",
                                           "probabilities": "float32 [batch, height, width, "
                                                            f"{info['num_classes']}]"}},
            SIGNATURE_BYTES: {"inputs": {"image_bytes": "string [batch] encoded JPEG/PNG, "
                                                        "one size per request"},
                              "outputs": "as serving_default"},
        },
        "grayscale_input": ("3-channel RGB converted to luma inside the graph"
                            if channels == 1 else None),
        "artifacts": {},
        "source_checkpoint": os.path.abspath(checkpoint),
        "training_config": config_dict,
    }


def _folder_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _inside(path, folder):
    """Whether ``path`` is ``folder`` or lies inside it."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_replaceable(out, sources=()):
    """Raise unless ``out`` may be replaced by an export.

    Only a SavedModel export (``saved_model.pb`` and ``metadata.json``) is ever
    replaced, and never one that holds one of ``sources`` (the checkpoint or
    run folder being exported).
    """
    for source in sources:
        if source and _inside(source, out):
            raise ValueError(
                f"out {out} holds the model being exported ({source}); replacing it would "
                "delete the source. Choose another folder (e.g. RUN/export)."
            )
    if not (is_saved_model(out) and os.path.isfile(os.path.join(out, METADATA_FILE))):
        raise FileExistsError(
            f"out {out} exists and is not a SavedModel export (no saved_model.pb and "
            f"{METADATA_FILE}); overwrite only ever replaces an export. Choose a new folder "
            "or remove this one yourself."
        )


def check_out(out, overwrite, sources=()):
    """Raise unless an export may be written to ``out``: new, or an earlier export to replace."""
    if not os.path.exists(out):
        return
    if not os.path.isdir(out):
        raise FileExistsError(f"out {out} is a file; an export is a folder. Choose a new folder "
                              "(TensorFlow Serving wants MODEL/VERSION, e.g. models/seg/1).")
    if not overwrite:
        raise FileExistsError(
            f"out {out} already exists. Pass overwrite=True to replace it, or choose "
            "a new folder (TensorFlow Serving wants MODEL/VERSION, e.g. models/seg/2)."
        )
    check_replaceable(out, sources)


def remove_stale_temporaries(out):
    """Delete ``.tmp-*`` / ``.old-*`` folders that an export killed mid-way left next to ``out``.

    Only folders named after ``out`` whose writing process is no longer
    running are removed. Returns the removed paths.
    """
    parent, name = os.path.split(os.path.abspath(out))
    pattern = re.compile(rf"^(?:{re.escape(TMP_PREFIX)}{re.escape(name)}|{re.escape(name)}"
                         r"\.old)-(\d+)(?:-|$)")
    removed = []
    for entry in os.listdir(parent) if os.path.isdir(parent) else ():
        match = pattern.match(entry)
        if match and not pid_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
            removed.append(os.path.join(parent, entry))
    return removed


def _precisions(value, enabled, check):
    """A tuple of checked precisions: one name or several, or () when the format is off."""
    if not enabled:
        return ()
    names = (value,) if isinstance(value, str) else tuple(value)
    for name in names:
        check(name)
    return tuple(dict.fromkeys(names))


def export_model(model, preprocessing, metadata, out, overwrite=False, tflite=False,
                 tflite_precision="float32", tflite_size=None, precision=None,
                 jit_compile=False, sources=(), onnx=False, onnx_precision="float32",
                 representative=None, fold_batch_norm=True):
    """Export an in-memory Keras model as a SavedModel folder ``out`` (and LiteRT / ONNX files).

    Args:
        model: the Keras model (on normalised images).
        preprocessing: its :class:`~fcn_tf.preprocessing.Preprocessing`.
        metadata: the metadata dict (:func:`export_metadata`).
        out: the SavedModel folder to create.
        overwrite: replace ``out`` if it is an earlier export (else raise).
        tflite: also write LiteRT files (:mod:`fcn_tf.runtimes.litert`).
        tflite_precision: one or several of ``float32``, ``float16``, ``int8``
            (dynamic range), ``int8_full`` (needs ``representative``); each is
            a file (``model.tflite``, ``model_float16.tflite``, ...).
        tflite_size: ``(height, width)`` to fix the LiteRT input size; default
            free height and width.
        precision: the SavedModel's compute precision, one of
            :data:`fcn_tf.precision.PRECISIONS`; ``None`` keeps the model's.
            ``mixed_bfloat16`` serves about 2x faster on CPUs with bf16 units.
        jit_compile: compile the served network with XLA (recompiles for
            every new input size; worth it only for a few fixed sizes).
        sources: paths ``out`` must never hold (the checkpoint, its run folder).
        onnx: also write ONNX files (:mod:`fcn_tf.runtimes.onnx`).
        onnx_precision: one or several of ``float32``, ``int8`` (dynamic).
        representative: uint8 ``[1, H, W, 3]`` images for ``int8_full``
            (:func:`representative_images`).
        fold_batch_norm: fold each convolution + BatchNormalization pair into
            one convolution in every exported graph
            (:func:`fcn_tf.models.folding.fold_batch_norm`; the same function
            up to float32 rounding, no normalisation ops left to run).

    Returns:
        A dict with the export path and the size in bytes of the SavedModel
        (``saved_model_bytes``) and of each other file (``files``).

    Example:
        >>> export_model(model, preprocessing, export_metadata(model, preprocessing,
        ...              "best.keras"), "models/seg/1")              # doctest: +SKIP
    """
    out = os.path.abspath(out)
    check_out(out, overwrite, sources)
    if tflite_size is not None and not (len(tflite_size) == 2
                                        and all(1 <= int(v) <= 16384 for v in tflite_size)):
        raise ValueError(f"tflite_size: expected [height, width] between 1 and 16384, received "
                         f"{list(tflite_size)}. Leave it out for any height and width.")
    tflite_precisions = _precisions(tflite_precision, tflite, litert.check_precision)
    onnx_precisions = _precisions(onnx_precision, onnx, onnx_runtime.check_precision)
    if "int8_full" in tflite_precisions and representative is None:
        raise ValueError("tflite_precision: int8_full needs representative images from the "
                         "training split; export a run folder (its config names the split).")
    folded = len(foldable_pairs(model)) if fold_batch_norm else 0
    if precision is None:
        precision = model_precision(model)
    if folded:
        model = fold(model)  # a float32 copy
    model = with_precision(model, precision)
    channels = int(model.input_shape[-1])
    preprocessing = preprocessing.for_channels(channels)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(out)
    tmp = make_temp_dir(parent, prefix=f"{TMP_PREFIX}{os.path.basename(out)}-{os.getpid()}-")
    try:
        export_saved_model(model, preprocessing, tmp, channels, jit_compile)
        artifacts = _write_artifacts(
            tmp, model, preprocessing, channels, tflite_precisions=tflite_precisions,
            tflite_size=tuple(tflite_size) if tflite_size else None,
            onnx_precisions=onnx_precisions, representative=representative)
        metadata = dict(metadata, precision=model_precision(model),
                        jit_compile=bool(jit_compile), batch_norm_folded=folded,
                        artifacts=artifacts)
        with open(os.path.join(tmp, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = {name: os.path.getsize(os.path.join(out, name)) for name in artifacts}
    result = {"export_dir": out, "normalization_source": metadata.get("normalization_source"),
              "saved_model_bytes": _folder_size(out) - sum(files.values()), "files": files}
    if litert.file_name("float32") in files:
        result["tflite_bytes"] = files[litert.file_name("float32")]
    return result


def export_checkpoint(checkpoint_path, export_dir, overwrite=False, tflite=False,
                      metadata_from_run=None, tflite_precision="float32", tflite_size=None,
                      precision=None, jit_compile=False, verbose=0, onnx=False,
                      onnx_precision="float32", fold_batch_norm=True):
    """Export a ``.keras`` checkpoint (or run folder) as a SavedModel in ``export_dir``.

    The path-based wrapper of :func:`export_model` used by the CLI: it loads
    the checkpoint, its run folder's config and normalisation, and refuses to
    replace a folder that holds them. ``int8_full`` LiteRT files are
    calibrated on the run's training images (:func:`representative_images`).

    Args:
        checkpoint_path: a ``.keras`` file or a run folder (its best.keras).
        export_dir: the SavedModel folder to create.
        metadata_from_run: the run folder whose config.json and
            preprocessing.json describe the model; default: the checkpoint's.
        tflite_size: a fixed LiteRT input size; default free.
        overwrite, tflite, tflite_precision, precision, jit_compile, onnx,
        onnx_precision, fold_batch_norm: as :func:`export_model`.
    """
    export_dir = os.path.abspath(export_dir)
    checkpoint = resolve_checkpoint(checkpoint_path)
    run_dir = metadata_from_run or find_run_dir(checkpoint_path)
    sources = [checkpoint, checkpoint_path] + ([run_dir] if run_dir else [])
    check_out(export_dir, overwrite, sources)
    model = keras.models.load_model(checkpoint, compile=False)
    config_dict = read_config_dict(run_dir) if run_dir else None
    config = read_run_config(run_dir, config_dict) if run_dir else None
    channels = int(model.input_shape[-1])
    preprocessing, source = resolve_preprocessing(run_dir or checkpoint_path, model, config,
                                                  channels)
    if verbose:
        print(f"Normalisation {preprocessing.to_dict()} from {source}", flush=True)
    metadata = export_metadata(model, preprocessing, checkpoint, config, config_dict, source)
    wants_full_int8 = tflite and "int8_full" in _precisions(tflite_precision, True, str)
    if wants_full_int8 and config is None:
        raise ValueError(f"tflite_precision: int8_full calibrates on the training images of a "
                         f"run folder's config; {checkpoint_path} has no run folder. Export the "
                         "run folder, or choose int8 (dynamic range).")
    representative = (representative_images(config, size=tflite_size)
                      if wants_full_int8 else None)
    return export_model(model, preprocessing, metadata, export_dir, overwrite=overwrite,
                        tflite=tflite, tflite_precision=tflite_precision, tflite_size=tflite_size,
                        precision=precision, jit_compile=jit_compile, sources=sources,
                        onnx=onnx, onnx_precision=onnx_precision, representative=representative,
                        fold_batch_norm=fold_batch_norm)


def _replace_folder(source, target):
    """Move ``source`` to ``target``, replacing an existing ``target`` last."""
    if not os.path.exists(target):
        os.replace(source, target)
        return
    old = f"{target}.old-{os.getpid()}"
    os.replace(target, old)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _parser():
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.export",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--checkpoint", required=True,
                        help="a .keras checkpoint or a run folder (its best.keras)")
    parser.add_argument("--out", required=True, help="the SavedModel folder to create")
    parser.add_argument("--tflite", action="store_true", help="also write LiteRT (.tflite) files")
    parser.add_argument("--tflite-precision", choices=TFLITE_PRECISIONS, nargs="+",
                        default=["float32"], metavar="P",
                        help="one file per precision: float32, float16, int8 (dynamic range), "
                             "int8_full (calibrated on training images)")
    parser.add_argument("--tflite-size", type=int, nargs=2, metavar=("H", "W"),
                        help="fix the LiteRT input size (default: any height and width)")
    parser.add_argument("--onnx", action="store_true", help="also write ONNX (.onnx) files")
    parser.add_argument("--onnx-precision", choices=onnx_runtime.PRECISIONS, nargs="+",
                        default=["float32"], metavar="P",
                        help="one file per precision: float32, int8 (dynamic)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="compute precision of the SavedModel (default: the checkpoint's); "
                             "mixed_bfloat16 is about 2x faster on CPUs with bf16 units")
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile with XLA: faster at a fixed size, but every new input "
                             "size compiles again (see docs/PERFORMANCE.md)")
    parser.add_argument("--no-fold-batch-norm", dest="fold_batch_norm", action="store_false",
                        help="keep BatchNormalization layers as trained instead of folding them "
                             "into the convolutions before them")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--check", metavar="SPLIT",
                        help="after exporting, score every file against the checkpoint on this "
                             "split of the run's data (pixels changed, mean IoU, images/s); "
                             f"writes OUT/{FIDELITY_FILE}")
    parser.add_argument("--check-only", action="store_true",
                        help="check the existing export --out; export nothing")
    parser.add_argument("--check-images", type=int, metavar="N",
                        help="check on the first N images of the split only")
    parser.add_argument("--max-changed", type=float, default=MAX_CHANGED, metavar="SHARE",
                        help="flag files that change more than this share of pixels "
                             f"(default {MAX_CHANGED}); a flagged check exits with status 3")
    return parser


def _check(args):
    """Run the fidelity check of ``args.out`` and write it; return the rows."""
    run_dir = find_run_dir(args.checkpoint)
    if run_dir is None:
        raise ValueError(f"checkpoint {args.checkpoint}: the check scores a split of a run's "
                         "data, and this checkpoint has no run folder (config.json).")
    config = read_run_config(run_dir)
    rows = check_export(args.out, args.checkpoint, config, args.check,
                        max_images=args.check_images, max_changed=args.max_changed)
    atomic_write_json(os.path.join(args.out, FIDELITY_FILE),
                      {"split": args.check, "checkpoint": os.path.abspath(args.checkpoint),
                       "max_changed": args.max_changed, "rows": rows})
    print(f"\nFidelity on {args.check} ({rows[0]['images']} images; the Keras model in float32 "
          "first, the reference):")
    print(format_fidelity(rows, args.max_changed))
    return rows


def main(argv=None):
    args = _parser().parse_args(argv)
    flags = {"out": "--out", "checkpoint": "--checkpoint", "overwrite": "--overwrite",
             "tflite_precision": "--tflite-precision", "onnx_precision": "--onnx-precision",
             "max_changed": "--max-changed", "split": "--check", "max_images": "--check-images",
             "tflite_size": "--tflite-size", "export_dir": "--out"}
    if args.check_only and not args.check:
        return report_error(ValueError("check_only: --check-only needs --check SPLIT."), flags)
    try:
        if not args.check_only:
            result = export_checkpoint(
                args.checkpoint, args.out, overwrite=args.overwrite, tflite=args.tflite,
                tflite_precision=args.tflite_precision, tflite_size=args.tflite_size,
                precision=args.precision, jit_compile=args.jit_compile, verbose=1,
                onnx=args.onnx, onnx_precision=args.onnx_precision,
                fold_batch_norm=args.fold_batch_norm)
            print(f"SavedModel: {result['export_dir']} "
                  f"({result['saved_model_bytes'] / 2**20:.2f} MiB)")
            for name, size in result["files"].items():
                print(f"{name}: {os.path.join(result['export_dir'], name)} "
                      f"({size / 2**20:.2f} MiB)")
            print(f"Inspect: saved_model_cli show --dir {result['export_dir']} --all")
        rows = _check(args) if args.check else []
    except (FileExistsError, FileNotFoundError, ValueError, OSError, DatasetError) as error:
        return report_error(error, flags)
    return 3 if any(row["flagged"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
