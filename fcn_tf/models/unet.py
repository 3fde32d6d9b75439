"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015).

Double 3x3 convolutions with BatchNorm and ReLU, 2x2 max pooling down and
2x2 transposed convolutions up, skip concatenation, 1x1 head.

``padding="same"`` (default) accepts any size: the input is zero-padded at
the bottom/right to a multiple of ``2**depth`` and the logits are cropped
back. ``padding="valid"`` builds the paper's network, whose output is smaller
than its input and whose input size must satisfy the rule in
:func:`unet_valid_output_size` (572x572 in, 388x388 out for depth 4).

``variant`` chooses where a ``"same"`` U-Net pads when a side is not a
multiple of ``2**depth`` (:data:`VARIANTS`; the weights and layer names are
the same, and at multiples of ``2**depth`` so are the logits):

- ``"default"``: the input is padded and the logits cropped, as above.
- ``"milesial"``: the geometry of https://github.com/milesial/Pytorch-UNet
  (``unet/unet_parts.py``, class ``Up``), so that its state dicts give equal
  logits at any size (:mod:`fcn_tf.weights.torch_unet`): no input padding,
  max pooling drops an odd last row/column, and each upsampled map is
  zero-padded to its skip's size (``diff // 2`` before, the rest after;
  :class:`~fcn_tf.layers.CenterPadLike`) before ``[skip, upsampled]`` are
  concatenated. Sides must be at least ``2**depth``.
"""

import keras
from keras import layers

from fcn_tf.backbones.unet_encoder import double_conv, unet_encoder
from fcn_tf.layers import CenterCropLike, CenterPadLike, CropLike, PadToMultiple
from fcn_tf.models.common import logits_output, model_inputs

VARIANTS = ("default", "milesial")


def _valid_output_size(size, depth):
    """Output size of a valid-padding U-Net, or ``None`` if ``size`` does not fit."""
    s = size
    for _ in range(depth):
        s -= 4
        if s <= 0 or s % 2:
            return None
        s //= 2
    s -= 4
    for _ in range(depth):
        if s <= 0:
            return None
        s = 2 * s - 4
    return s if s > 0 else None


def unet_valid_output_size(size, depth=4):
    """Output size of a valid-padding U-Net for input ``size``; raise if invalid.

    Each level's two 3x3 valid convolutions remove 4 pixels and every pooled
    size must be even. For depth 4 the input must be ``16 k + 12`` with
    ``k >= 8`` (140, 156, ..., 572, ...), and the output is ``input - 184``.

    Example:
        >>> unet_valid_output_size(572)
        388
    """
    out = _valid_output_size(size, depth)
    if out is not None:
        return out
    candidates = range(max(1, size - 64), size + 65)
    valid = [n for n in candidates if _valid_output_size(n, depth) is not None]
    nearest = sorted(sorted(valid, key=lambda n: abs(n - size))[:2])
    hint = f" Nearest valid sizes: {', '.join(map(str, nearest))}." if nearest else ""
    raise ValueError(
        f"U-Net with padding='valid' and depth={depth} cannot take size {size}: "
        "every level needs a positive, even size after its two valid "
        f"convolutions.{hint} Or use padding='same', which accepts any size."
    )


def build_unet(
    num_classes,
    backbone="unet_encoder",
    *,
    base_filters=64,
    depth=4,
    padding="same",
    batch_norm=True,
    input_channels=3,
    input_size=None,
    variant="default",
):
    """Build a U-Net.

    Args:
        num_classes: output channels; ``1`` gives a single logit for binary
            segmentation (use a sigmoid loss).
        backbone: only ``"unet_encoder"`` (the paper's contracting path).
        base_filters: filters at full resolution (64 in the paper), doubled
            at every level.
        depth: number of 2x down-samplings (4 in the paper: 64 ... 1024).
        padding: ``"same"`` (any size in, same size out) or ``"valid"``
            (the paper's network; see :func:`unet_valid_output_size`).
        batch_norm: BatchNorm after every convolution.
        input_channels: 1 for grayscale, 3 for RGB, or any other count.
        input_size: optional fixed ``(height, width)``.
        variant: ``"default"`` or ``"milesial"`` (milesial/Pytorch-UNet's
            padding of the upsampled maps; needs ``padding="same"``).

    Example:
        >>> import fcn_tf
        >>> model = fcn_tf.build_model("unet", 2, base_filters=4, depth=2, variant="milesial")
        >>> [layer.name for layer in model.layers if layer.name.endswith("_pad")]
        ['dec1_pad', 'dec0_pad']
    """
    _check_arguments(backbone, padding, variant, depth, input_size)
    inputs = model_inputs(input_channels, input_size)
    if padding == "valid" and input_size is not None:
        for side in input_size:
            if side is not None:
                unet_valid_output_size(side, depth)
    pad_input = padding == "same" and variant == "default"
    x = PadToMultiple(2**depth, name="pad_to_multiple")(inputs) if pad_input else inputs
    features = unet_encoder(
        x, base_filters=base_filters, depth=depth, padding=padding, batch_norm=batch_norm
    )
    x = _expanding_path(features, base_filters=base_filters, depth=depth, padding=padding,
                        batch_norm=batch_norm, variant=variant)
    x = layers.Conv2D(num_classes, 1, name="head")(x)
    if pad_input:
        x = CropLike(0, name="crop_to_input")(x, inputs)
    return keras.Model(inputs, logits_output(x), name="unet")


def _check_arguments(backbone, padding, variant, depth, input_size):
    """Refuse the arguments :func:`build_unet` cannot build, naming the fix."""
    if padding not in ("same", "valid"):
        raise ValueError(
            f"U-Net padding must be 'same' or 'valid', received {padding!r}."
        )
    if variant not in VARIANTS:
        raise ValueError(
            f"U-Net variant must be one of {', '.join(map(repr, VARIANTS))}, "
            f"received {variant!r}."
        )
    if variant == "milesial" and padding != "same":
        raise ValueError(
            f"U-Net variant='milesial' needs padding='same' (its convolutions pad by 1), "
            f"received padding={padding!r}. Use variant='default' for the valid network."
        )
    if backbone != "unet_encoder":
        raise ValueError(
            f"U-Net supports only backbone 'unet_encoder', received {backbone!r}."
        )
    if variant == "milesial" and input_size is not None:
        if any(side is not None and side < 2**depth for side in input_size):
            raise ValueError(
                f"U-Net variant='milesial' with depth={depth} needs sides of at least "
                f"{2**depth} (every level halves them), received input_size={tuple(input_size)}. "
                "Use variant='default', which pads any size, or a smaller depth."
            )


def _expanding_path(features, *, base_filters, depth, padding, batch_norm, variant):
    """The decoder: from ``P{depth}`` up to full resolution, one level per skip.

    Each level ``dec{level}`` upsamples 2x, crops the skip (``"valid"``) or
    pads the upsampled map (``"milesial"``), concatenates ``[skip, up]`` and
    applies a double convolution.
    """
    x = features[f"P{depth}"]
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, name=f"dec{level}_up")(x)
        skip = features[f"P{level}"]
        if padding == "valid":
            skip = CenterCropLike(name=f"dec{level}_crop")(skip, x)
        elif variant == "milesial":
            x = CenterPadLike(name=f"dec{level}_pad")(x, skip)
        x = layers.Concatenate(name=f"dec{level}_concat")([skip, x])
        x = double_conv(x, filters, f"dec{level}", padding, batch_norm)
    return x
