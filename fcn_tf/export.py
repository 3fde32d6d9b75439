"""``python -m fcn_tf.export --checkpoint PATH --out DIR [--tflite] [--overwrite]``.

Exports a trained model as a TensorFlow SavedModel for TensorFlow Serving
(see docs/SERVING.md), with normalisation inside the graph so clients send raw
pixels:

- ``serving_default``: ``images`` uint8 ``[batch, height, width, 3]`` (any
  height and width) -> ``class_ids`` int32 ``[batch, height, width]`` and
  ``probabilities`` float32 ``[batch, height, width, classes]``.
- ``serving_bytes``: ``image_bytes`` string ``[batch]`` of encoded JPEG / PNG
  (/ BMP / GIF) images, all of one size -> the same outputs.
- a non-signature function ``logits`` (Python ``tf.saved_model.load`` only):
  float32 pixels ``[batch, height, width, input_channels]`` in [0, 255] ->
  logits, used by ``python -m fcn_tf.predict`` for test-time augmentation.

Grayscale models (``image_channels`` 1) take the same 3-channel RGB inputs;
the graph converts them to luma (ITU-R 601-2, as the data pipeline does).
A two-class model with one binary logit gives ``probabilities`` ``[1 - p, p]``.

``metadata.json`` next to ``saved_model.pb`` holds the model name, class
names and colours, input channels, normalisation and training config.
``--tflite`` adds ``model.tflite``: a fixed-size ``[1, H, W, 3]`` uint8 input
(``--tflite-size``, default the training crop) with the same two outputs.

The export is written to a temporary folder next to ``--out`` and renamed
into place, so a failed export never leaves half a model.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

import keras
import tensorflow as tf

from fcn_tf.outputs import logits_to_classes, logits_to_probabilities
from fcn_tf.precision import PRECISIONS, with_precision
from fcn_tf.preprocessing import rgb_to_luma
from fcn_tf.runs.files import METADATA_FILE, TMP_PREFIX
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
from fcn_tf.utils.cli import report_error

TFLITE_FILE = "model.tflite"
TFLITE_PRECISIONS = ("float32", "float16", "int8")
SIGNATURE_IMAGES = "serving_default"
SIGNATURE_BYTES = "serving_bytes"
METADATA_VERSION = 1
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

    TFLite has no bfloat16 kernels, so a model trained with a mixed policy
    (``mixed_bfloat16``/``mixed_float16``; its variables are float32 anyway) is
    rebuilt with float32 layers and given the same weights before conversion.
    """
    return with_precision(model, "float32")


def convert_tflite(module, size, precision="float32"):
    """TFLite flatbuffer bytes of ``module``'s uint8 RGB path at a fixed ``[1, H, W, 3]``."""
    if precision not in TFLITE_PRECISIONS:
        raise ValueError(f"tflite_precision: expected one of {', '.join(TFLITE_PRECISIONS)}, "
                         f"received {precision!r}.")
    height, width = size
    # Through Keras' ExportArchive, as keras.Model.export(format="litert") does:
    # converting a plain tf.Module SavedModel gives a TFLite graph that reads
    # uninitialised resource variables (NaN outputs).
    with tempfile.TemporaryDirectory(prefix="fcn_tf-tflite-") as folder:
        archive = keras.export.ExportArchive()
        archive.track(module.model)
        archive.add_endpoint("serving_default", module.from_rgb, input_signature=[
            tf.TensorSpec([1, height, width, 3], tf.uint8, name="images")])
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if precision == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range int8 weights
        return converter.convert()


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
        "tflite": None,
        "source_checkpoint": os.path.abspath(checkpoint),
        "training_config": config_dict,
    }


def _model_precision(model):
    """The dtype policy most of the model's layers compute in."""
    names = [layer.dtype_policy.name for layer in model.layers]
    return max(set(names), key=names.count)


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


def export_model(model, preprocessing, metadata, out, overwrite=False, tflite=False,
                 tflite_precision="float32", tflite_size=None, precision=None,
                 jit_compile=False, sources=()):
    """Export an in-memory Keras model as a SavedModel folder ``out``.

    Args:
        model: the Keras model (on normalised images).
        preprocessing: its :class:`~fcn_tf.preprocessing.Preprocessing`.
        metadata: the metadata dict (:func:`export_metadata`).
        out: the SavedModel folder to create.
        overwrite: replace ``out`` if it is an earlier export (else raise).
        tflite: also write ``model.tflite``.
        tflite_precision: ``float32``, ``float16`` or ``int8`` (dynamic range).
        tflite_size: ``(height, width)`` of the TFLite input; default 256 x 256.
        precision: the SavedModel's compute precision, one of
            :data:`fcn_tf.precision.PRECISIONS`; ``None`` keeps the model's.
            ``mixed_bfloat16`` serves about 2x faster on CPUs with bf16 units.
        jit_compile: compile the served network with XLA (recompiles for
            every new input size; worth it only for a few fixed sizes).
        sources: paths ``out`` must never hold (the checkpoint, its run folder).

    Returns:
        A dict with the export path and file sizes.

    Example:
        >>> export_model(model, preprocessing, export_metadata(model, preprocessing,
        ...              "best.keras"), "models/seg/1")              # doctest: +SKIP
    """
    out = os.path.abspath(out)
    if os.path.exists(out):
        if not overwrite:
            raise FileExistsError(
                f"out {out} already exists. Pass overwrite=True to replace it, or choose "
                "a new folder (TensorFlow Serving wants MODEL/VERSION, e.g. models/seg/2)."
            )
        check_replaceable(out, sources)
    if precision is not None:
        model = with_precision(model, precision)
    channels = int(model.input_shape[-1])
    preprocessing = preprocessing.for_channels(channels)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(out)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f"{TMP_PREFIX}{os.path.basename(out)}-{os.getpid()}-")
    try:
        module = export_saved_model(model, preprocessing, tmp, channels, jit_compile)
        metadata = dict(metadata, precision=_model_precision(model), jit_compile=bool(jit_compile))
        if tflite:
            size = tuple(tflite_size or (256, 256))
            tflite_model = float32_copy(model)
            if tflite_model is not model:
                module = _serving_module(tflite_model, preprocessing, channels)
            data = convert_tflite(module, size, tflite_precision)
            with open(os.path.join(tmp, TFLITE_FILE), "wb") as f:
                f.write(data)
            metadata["tflite"] = {"file": TFLITE_FILE, "precision": tflite_precision,
                                  "input": f"uint8 [1, {size[0]}, {size[1]}, 3] RGB",
                                  "outputs": ["class_ids", "probabilities"]}
        with open(os.path.join(tmp, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = {"export_dir": out, "normalization_source": metadata.get("normalization_source"),
              "saved_model_bytes": _folder_size(out)}
    if tflite:
        result["tflite_bytes"] = os.path.getsize(os.path.join(out, TFLITE_FILE))
        result["saved_model_bytes"] -= result["tflite_bytes"]
    return result


def export_checkpoint(checkpoint_path, export_dir, overwrite=False, tflite=False,
                      metadata_from_run=None, tflite_precision="float32", tflite_size=None,
                      precision=None, jit_compile=False, verbose=0):
    """Export a ``.keras`` checkpoint (or run folder) as a SavedModel in ``export_dir``.

    The path-based wrapper of :func:`export_model` used by the CLI: it loads
    the checkpoint, its run folder's config and normalisation, and refuses to
    replace a folder that holds them.

    Args:
        checkpoint_path: a ``.keras`` file or a run folder (its best.keras).
        export_dir: the SavedModel folder to create.
        metadata_from_run: the run folder whose config.json and
            preprocessing.json describe the model; default: the checkpoint's.
        tflite_size: default the config's ``data.crop_size``, else 256 x 256.
        overwrite, tflite, tflite_precision, precision, jit_compile: as
            :func:`export_model`.
    """
    export_dir = os.path.abspath(export_dir)
    checkpoint = resolve_checkpoint(checkpoint_path)
    run_dir = metadata_from_run or find_run_dir(checkpoint_path)
    sources = [checkpoint, checkpoint_path] + ([run_dir] if run_dir else [])
    if os.path.exists(export_dir):
        if not overwrite:
            raise FileExistsError(
                f"out {export_dir} already exists. Pass overwrite=True to replace it, or "
                "choose a new folder (TensorFlow Serving wants MODEL/VERSION, e.g. "
                "models/seg/2)."
            )
        check_replaceable(export_dir, sources)
    model = keras.models.load_model(checkpoint, compile=False)
    config_dict = read_config_dict(run_dir) if run_dir else None
    config = read_run_config(run_dir, config_dict) if run_dir else None
    channels = int(model.input_shape[-1])
    preprocessing, source = resolve_preprocessing(run_dir or checkpoint_path, model, config,
                                                  channels)
    if verbose:
        print(f"Normalisation {preprocessing.to_dict()} from {source}", flush=True)
    metadata = export_metadata(model, preprocessing, checkpoint, config, config_dict, source)
    size = tflite_size or (config.data.crop_size if config else None)
    return export_model(model, preprocessing, metadata, export_dir, overwrite=overwrite,
                        tflite=tflite, tflite_precision=tflite_precision, tflite_size=size,
                        precision=precision, jit_compile=jit_compile, sources=sources)


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.export",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--checkpoint", required=True,
                        help="a .keras checkpoint or a run folder (its best.keras)")
    parser.add_argument("--out", required=True, help="the SavedModel folder to create")
    parser.add_argument("--tflite", action="store_true", help="also write model.tflite")
    parser.add_argument("--tflite-precision", choices=TFLITE_PRECISIONS, default="float32",
                        help="TFLite weights: float32, float16 or dynamic-range int8")
    parser.add_argument("--tflite-size", type=int, nargs=2, metavar=("H", "W"),
                        help="fixed TFLite input size (default: the training crop)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="compute precision of the SavedModel (default: the checkpoint's); "
                             "mixed_bfloat16 is about 2x faster on CPUs with bf16 units")
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile with XLA: faster at a fixed size, but every new input "
                             "size compiles again (see docs/PERFORMANCE.md)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:
        result = export_checkpoint(args.checkpoint, args.out, overwrite=args.overwrite,
                              tflite=args.tflite, tflite_precision=args.tflite_precision,
                              tflite_size=args.tflite_size, precision=args.precision,
                              jit_compile=args.jit_compile, verbose=1)
    except (FileExistsError, FileNotFoundError, ValueError, OSError) as error:
        return report_error(error, {"out": "--out", "checkpoint": "--checkpoint",
                                    "overwrite": "--overwrite",
                                    "tflite_precision": "--tflite-precision"})
    print(f"SavedModel: {result['export_dir']} ({result['saved_model_bytes'] / 2**20:.2f} MiB)")
    if "tflite_bytes" in result:
        print(f"TFLite: {os.path.join(result['export_dir'], TFLITE_FILE)} "
              f"({result['tflite_bytes'] / 2**20:.2f} MiB)")
    print(f"Inspect: saved_model_cli show --dir {result['export_dir']} --all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
