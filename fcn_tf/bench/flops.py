"""Floating-point operations of a model, counted from its layers.

Only the layers that multiply and add weights are counted: ``Conv2D``,
``Conv2DTranspose``, ``DepthwiseConv2D``, ``SeparableConv2D`` and ``Dense``,
each multiply-add counted as 2 FLOPs (the convention of the FLOP figures in the
papers and in ``tf.profiler``). Bias adds, BatchNorm, activations, pooling,
resizing and crops are left out: for the networks here they are under 1% of
the total. A training step is counted as 3 forward passes (the backward pass
computes the gradients of the inputs and of the weights, each the size of the
forward pass).

The model must be built with a fixed input size (``input_size=(H, W)`` of
:func:`fcn_tf.build_model`) so that every layer's shapes are known.
"""

import math

import keras

from fcn_tf.models import build_model

TRAIN_STEP_FORWARD_PASSES = 3


def _spatial(shape):
    """``H * W`` of a ``(batch, H, W, C)`` shape; an error if unknown."""
    return math.prod(shape[1:-1])


def layer_flops(layer):
    """FLOPs of one call of ``layer`` on one image (0 for layers that are not counted)."""
    if not any(isinstance(layer, kind) for kind in COUNTED):
        return 0
    inputs, outputs = layer.input.shape, layer.output.shape
    if None in inputs[1:] or None in outputs[1:]:
        raise ValueError(
            f"layer {layer.name!r}: shapes {inputs} -> {outputs} are not fully known; build the "
            "model with a fixed input_size=(height, width) to count its FLOPs."
        )
    cin, cout = inputs[-1], outputs[-1]
    if isinstance(layer, keras.layers.Dense):
        return 2 * math.prod(inputs[1:]) * cout
    kernel = math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        # Every input pixel is scattered through the whole kernel to every output channel.
        return 2 * _spatial(inputs) * kernel * cin * cout
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return 2 * _spatial(outputs) * kernel * cout
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = cin * layer.depth_multiplier
        return 2 * _spatial(outputs) * (kernel * depthwise + depthwise * cout)
    groups = getattr(layer, "groups", 1)
    return 2 * _spatial(outputs) * kernel * (cin // groups) * cout


# The layers that carry multiply-adds (in Keras 3 none of them subclasses another).
COUNTED = (keras.layers.Dense, keras.layers.Conv2DTranspose, keras.layers.DepthwiseConv2D,
           keras.layers.SeparableConv2D, keras.layers.Conv2D)


def model_flops(model):
    """Forward-pass FLOPs per image of a model built with a fixed input size."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += model_flops(layer)
        else:
            total += layer_flops(layer)
    return total


def flops_per_image(name, num_classes, height, width, backbone=None, **options):
    """Forward-pass FLOPs per ``height`` x ``width`` image of a registered model."""
    model = build_model(name, num_classes, backbone, input_size=(height, width), **options)
    try:
        return model_flops(model)
    finally:
        del model
        keras.backend.clear_session()
