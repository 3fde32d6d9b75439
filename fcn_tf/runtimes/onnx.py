"""ONNX files: conversion from a serving function with ``tf2onnx``, reading with ``onnxruntime``.

The graph takes ``images`` uint8 ``[batch, height, width, 3]`` RGB (all three
sizes free) and gives ``class_ids`` int32 ``[batch, height, width]`` and
``probabilities`` float32 ``[batch, height, width, K]``, normalisation inside,
as the SavedModel's ``serving_default``.

Precisions (:data:`PRECISIONS`): ``float32``, and ``int8``: dynamic
quantisation by ``onnxruntime.quantization`` (int8 weights, activations
quantised per call).

One conversion detail: ``tf2onnx`` writes a ``"SAME"``-padded dilated
convolution of unknown input size as ``auto_pad=SAME_UPPER``, which
onnxruntime refuses for dilated kernels ("Dilation not supported for
AutoPadType::SAME_UPPER"). With stride 1 that padding does not depend on the
input size (``dilation * (kernel - 1)`` in all, the odd one after, as in
TensorFlow), so :func:`explicit_dilated_padding` writes it out.
"""

import os
import tempfile

import numpy as np
import tensorflow as tf

try:  # Keras' own shim for tf2onnx under NumPy 2 (what keras.Model.export(format="onnx") uses)
    from keras.src.export.tf2onnx_lib import patch_tf2onnx
except ImportError:  # a Keras without it: tf2onnx runs on this NumPy as it is
    def patch_tf2onnx():
        return None

from fcn_tf.runtimes import common
from fcn_tf.runtimes.common import ArtifactRunner, artifact_file_name, require

PRECISIONS = ("float32", "int8")
OPSET = 17


def file_name(precision):
    """``model.onnx`` for float32, ``model_<precision>.onnx`` otherwise."""
    return artifact_file_name(".onnx", precision)


def check_precision(precision):
    common.check_precision("onnx_precision", precision, PRECISIONS)


def _attribute(node, name):
    for attribute in node.attribute:
        if attribute.name == name:
            return attribute
    return None


def explicit_dilated_padding(graph):
    """Give stride-1 dilated ``Conv`` nodes with ``auto_pad=SAME_*`` explicit ``pads``.

    Returns the number of nodes changed. The kernel size comes from the
    ``kernel_shape`` attribute or the weight initializer ``[out, in, kh, kw]``.
    """
    onnx = require("onnx_format", "writing an ONNX file")
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    changed = 0
    for node in graph.node:
        auto_pad = _attribute(node, "auto_pad")
        dilations = _attribute(node, "dilations")
        if (node.op_type != "Conv" or auto_pad is None or dilations is None
                or auto_pad.s not in (b"SAME_UPPER", b"SAME_LOWER")
                or max(dilations.ints) <= 1):
            continue
        strides = _attribute(node, "strides")
        if strides is not None and max(strides.ints) > 1:
            continue  # padding depends on the input size: left to the runtime
        kernel = _attribute(node, "kernel_shape")
        kernel = list(kernel.ints) if kernel is not None else shapes.get(node.input[1], [])[2:]
        if len(kernel) != len(dilations.ints):
            continue
        totals = [d * (k - 1) for d, k in zip(dilations.ints, kernel)]
        small = [t // 2 for t in totals]
        large = [t - t // 2 for t in totals]
        before, after = (small, large) if auto_pad.s == b"SAME_UPPER" else (large, small)
        node.attribute.remove(auto_pad)
        node.attribute.append(onnx.helper.make_attribute("pads", before + after))
        changed += 1
    return changed


def convert(from_rgb, precision="float32"):
    """ONNX model bytes of ``from_rgb`` (uint8 RGB ``[B, H, W, 3]`` -> outputs dict)."""
    check_precision(precision)
    tf2onnx = require("tf2onnx", "writing an ONNX file")
    onnx = require("onnx_format", "writing an ONNX file")
    patch_tf2onnx()  # tf2onnx 1.17 still uses NumPy aliases that NumPy 2 removed
    signature = [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]
    function = tf.function(from_rgb, input_signature=signature)
    model, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET)
    explicit_dilated_padding(model.graph)
    if precision == "float32":
        return model.SerializeToString()
    require("onnx", "quantising an ONNX file")
    from onnxruntime.quantization import QuantType, quantize_dynamic  # an optional extra
    with tempfile.TemporaryDirectory(prefix="fcn_tf-onnx-") as folder:
        source, target = os.path.join(folder, "float.onnx"), os.path.join(folder, "int8.onnx")
        onnx.save(model, source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        with open(target, "rb") as f:
            return f.read()


def load(path, num_threads=None):
    """An :class:`~fcn_tf.runtimes.ArtifactRunner` reading ``path`` with ``onnxruntime``."""
    ort = require("onnx", f"reading {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads or os.cpu_count()
    options.log_severity_level = 3  # errors only: no graph-optimiser notices in user logs
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        raise ValueError(f"model {path}: onnxruntime cannot read this file ({error}).") from error
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    if "images" not in inputs or not {"class_ids", "probabilities"} <= set(outputs):
        raise ValueError(f"model {path}: expected input 'images' and outputs 'class_ids', "
                         f"'probabilities', received {sorted(inputs)} -> {outputs}; export it "
                         "with python -m fcn_tf.export --onnx.")
    shape = inputs["images"].shape
    free = not (isinstance(shape[1], int) and isinstance(shape[2], int))

    def run(images):
        class_ids, probabilities = session.run(["class_ids", "probabilities"],
                                               {"images": np.ascontiguousarray(images)})
        return {"class_ids": class_ids.astype(np.int32), "probabilities": probabilities}

    return ArtifactRunner(str(path), "onnx", run, free, None if free else tuple(shape[1:3]))
