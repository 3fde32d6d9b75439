"""State dicts of the common PyTorch U-Net layout (milesial/Pytorch-UNet).

https://github.com/milesial/Pytorch-UNet (``unet/unet_parts.py``,
``unet/unet_model.py``) with ``bilinear=False``: double 3x3 convolutions with
BatchNorm, 2x2 max pooling, 2x2 stride-2 transposed convolutions, the skip
concatenated first (``torch.cat([x2, x1])``, as this package's U-Net), a 1x1
head. Its depth 4 / 64 filters is ``build_model("unet", n, base_filters=64,
depth=4)``; other depths (``down1`` ... ``down<d>``) and widths map the same
way (:func:`rows`; conversions in :mod:`.torch_layout`):

===========================================  =================================
PyTorch                                      Keras
===========================================  =================================
``inc.double_conv.0/1``, ``.3/4``            ``enc0_conv1/enc0_bn1``, ``enc0_conv2/enc0_bn2``
``down<k>.maxpool_conv.1.double_conv.0..4``  ``enc<k>_conv1/bn1/conv2/bn2``
``up<j>.up`` (ConvTranspose2d)               ``dec<d-j>_up``
``up<j>.conv.double_conv.0..4``              ``dec<d-j>_conv1/bn1/conv2/bn2``
``outc.conv``                                ``head``
===========================================  =================================

Convolutions with a bias before BatchNorm (U-Nets written with
``bias=True``) load too: the bias is folded into the moving mean. The
weights fit either U-Net variant; equal logits at every input size need
``variant="milesial"`` (which :func:`architecture` gives, so
``fcn_tf.from_pytorch`` builds it): milesial pads each upsampled map to its
skip (centred), while the default U-Net pads the input at the bottom/right
and so agrees only when the sides are multiples of ``2**depth``.
``bilinear=True`` U-Nets (``nn.Upsample`` and halved channels) have another
architecture and are refused. Its images are scaled to [0, 1] (``img / 255``).
"""

import re

from fcn_tf.weights.torch_layout import Conv, ConvBN, MappingError

SIGNATURE = "inc.double_conv.0.weight"
HINT = (
    "The file must be a state dict of milesial/Pytorch-UNet's UNet(bilinear=False) "
    "(or the same layout), and the model fcn_tf.from_pytorch(path, 'unet', num_classes), "
    "which reads base_filters, depth and input_channels from the file and builds "
    "variant='milesial'."
)
DOWN = re.compile(r"down(\d+)\.")


def depth_of(state):
    """The number of ``down<k>`` blocks in ``state``."""
    return max((int(m.group(1)) for key in state if (m := DOWN.match(key))), default=0)


def architecture(state):
    """The U-Net options of the network that wrote ``state``.

    ``base_filters``, ``depth`` and ``input_channels`` read from its shapes
    and keys, and ``variant="milesial"`` (that code's padding geometry).
    """
    weight = state[SIGNATURE]
    return {
        "base_filters": int(weight.shape[0]),
        "depth": depth_of(state),
        "input_channels": int(weight.shape[1]),
        "variant": "milesial",
    }


def _double_conv(source, target):
    return [
        ConvBN(f"{source}.0", f"{source}.1", f"{target}_conv1", f"{target}_bn1"),
        ConvBN(f"{source}.3", f"{source}.4", f"{target}_conv2", f"{target}_bn2"),
    ]


def rows(state):
    """The mapping rows for ``state`` (its depth read from the ``down<k>`` keys)."""
    depth = depth_of(state)
    if depth and "up1.up.weight" not in state:
        raise MappingError(
            "the state dict has no 'up1.up.weight': a U-Net with bilinear upsampling "
            "(milesial bilinear=True), whose channels differ from this package's U-Net, "
            "which upsamples with transposed convolutions; train it with bilinear=False"
        )
    table = _double_conv("inc.double_conv", "enc0")
    for level in range(1, depth + 1):
        table += _double_conv(f"down{level}.maxpool_conv.1.double_conv", f"enc{level}")
    for step in range(1, depth + 1):
        level = depth - step
        table.append(Conv(f"up{step}.up", f"dec{level}_up", transposed=True))
        table += _double_conv(f"up{step}.conv.double_conv", f"dec{level}")
    table.append(Conv("outc.conv", "head"))
    return table
