"""PyTorch module weights to Keras layer weights: one table row per module.

A mapping (:mod:`.torch_deeplab`, :mod:`.torch_unet`) lists rows
``Conv(source, target)`` / ``ConvBN(conv, bn, target_conv, target_bn)``;
:func:`convert` turns a state dict into ``{Keras layer: [arrays]}`` by them
and says which keys no row took. What it transposes:

- ``Conv2d.weight`` ``(out, in, kh, kw)`` to ``Conv2D`` ``(kh, kw, in, out)``:
  transpose ``(2, 3, 1, 0)``;
- a depthwise ``Conv2d.weight`` ``(channels, 1, kh, kw)`` to
  ``DepthwiseConv2D`` ``(kh, kw, channels, 1)``: transpose ``(2, 3, 0, 1)``;
- ``ConvTranspose2d.weight`` ``(in, out, kh, kw)`` to ``Conv2DTranspose``
  ``(kh, kw, out, in)``: transpose ``(2, 3, 1, 0)``, not flipped (both define
  it as the gradient of the same cross-correlation);
- ``BatchNorm2d`` ``weight, bias, running_mean, running_var`` to
  ``gamma, beta, moving_mean, moving_variance`` (``num_batches_tracked``,
  a step counter Keras has no use for, is dropped);
- a convolution's ``bias`` followed by BatchNorm into a Keras convolution
  without bias: ``BN(conv(x) + b)`` uses ``x - running_mean`` after adding
  ``b``, so the bias is folded as ``moving_mean - b`` (exact in inference; in
  training BatchNorm subtracts the batch mean, which removes any constant).
"""

import dataclasses

import numpy as np

BN_PARAMETERS = ("weight", "bias", "running_mean", "running_var")
IGNORED_SUFFIX = ".num_batches_tracked"


@dataclasses.dataclass(frozen=True)
class Conv:
    """``Conv2d`` / ``ConvTranspose2d`` ``source`` into Keras layer ``target`` (kernel, bias)."""

    source: str
    target: str
    depthwise: bool = False
    transposed: bool = False


@dataclasses.dataclass(frozen=True)
class ConvBN:
    """``Conv2d`` then ``BatchNorm2d`` into a Keras convolution without bias and its BatchNorm."""

    conv: str
    bn: str
    target_conv: str
    target_bn: str
    depthwise: bool = False


class MappingError(ValueError):
    """A state dict entry missing or of the wrong rank for its row; the caller adds the file."""


def kernel(array, key, depthwise=False):
    """A PyTorch conv / transposed-conv weight in the Keras layout (see the module docstring)."""
    array = np.asarray(array)
    if array.ndim != 4:
        raise MappingError(
            f"{key!r}: expected a 4-D convolution weight, received shape {array.shape}"
        )
    if depthwise:
        if array.shape[1] != 1:
            raise MappingError(
                f"{key!r}: expected a depthwise weight (channels, 1, kh, kw), "
                f"received {array.shape}"
            )
        return array.transpose(2, 3, 0, 1)
    return array.transpose(2, 3, 1, 0)


def _take(state, key, used):
    if key not in state:
        raise MappingError(f"the state dict lacks {key!r}")
    used.add(key)
    return np.asarray(state[key])


def convert(state, rows):
    """Map ``state`` by ``rows``.

    Returns:
        ``(arrays, sources, leftover)``: ``{Keras layer: [arrays]}``,
        ``{Keras layer: [state dict keys]}``, and the keys no row took
        (``num_batches_tracked`` excepted).

    Raises:
        MappingError: a key a row needs is missing, or has the wrong rank.
    """
    arrays, sources, used = {}, {}, set()
    for row in rows:
        if isinstance(row, Conv):
            weight_key = f"{row.source}.weight"
            values = [kernel(_take(state, weight_key, used), weight_key, row.depthwise)]
            keys = [weight_key]
            if f"{row.source}.bias" in state:
                values.append(_take(state, f"{row.source}.bias", used))
                keys.append(f"{row.source}.bias")
            arrays[row.target], sources[row.target] = values, keys
        else:
            weight_key = f"{row.conv}.weight"
            arrays[row.target_conv] = [
                kernel(_take(state, weight_key, used), weight_key, row.depthwise)
            ]
            sources[row.target_conv] = [weight_key]
            bn_keys = [f"{row.bn}.{p}" for p in BN_PARAMETERS]
            gamma, beta, mean, variance = (_take(state, k, used) for k in bn_keys)
            bias_key = f"{row.conv}.bias"
            if bias_key in state:
                bias = _take(state, bias_key, used)
                if bias.shape != mean.shape:
                    raise MappingError(
                        f"{bias_key!r} of shape {bias.shape} cannot fold into "
                        f"{row.bn + '.running_mean'!r} of shape {mean.shape}"
                    )
                mean = mean - bias
                bn_keys[2] = f"{row.bn}.running_mean - {bias_key}"
            arrays[row.target_bn] = [gamma, beta, mean, variance]
            sources[row.target_bn] = bn_keys
    leftover = [k for k in state if k not in used and not k.endswith(IGNORED_SUFFIX)]
    return arrays, sources, leftover


def unused_counters(state):
    """``{key: reason}`` for the BatchNorm step counters :func:`convert` drops."""
    return {
        key: "BatchNorm step counter; Keras BatchNorm has none"
        for key in state
        if key.endswith(IGNORED_SUFFIX)
    }
