"""Build the model a PyTorch checkpoint was trained as, and load it: :func:`from_pytorch`."""

from fcn_tf.models import build_model
from fcn_tf.weights.errors import WeightsError
from fcn_tf.weights.loading import load_weights
from fcn_tf.weights.torch_pth import detect_layout
from fcn_tf.weights.torch_pickle import read_state_dict
from fcn_tf.weights.torch_unet import architecture as unet_architecture

# pytorch-fcn's VGG16 has 64 channels in conv1_1; the package's FCN scales all widths.
PYTORCH_FCN_CONV1_CHANNELS = 64


def _architecture_options(name, state):
    """Options of ``build_model(name, ...)`` that the state dict fixes (shapes)."""
    if name == "unet":
        return unet_architecture(state)
    if name == "deeplabv3plus":
        return {
            "variant": "bubbliiiing",
            "input_channels": int(state["backbone.features.0.0.weight"].shape[1]),
        }
    weight = state["conv1_1.weight"]
    return {
        "width_multiplier": weight.shape[0] / PYTORCH_FCN_CONV1_CHANNELS,
        "input_channels": int(weight.shape[1]),
    }


def from_pytorch(path, name, num_classes, backbone=None, **options):
    """Build ``name`` as the PyTorch code that wrote ``path`` did, and load its weights.

    Reads a ``.pth`` / ``.pt`` (``torch.save`` of a state dict, or a
    checkpoint dict holding one under ``"model"``, ``"state_dict"``,
    ``"net"`` ...) without PyTorch and without running code from the file.
    Supported: bubbliiiing/deeplabv3-plus-pytorch's DeepLabV3+ MobileNetV2
    (built with ``variant="bubbliiiing"``), milesial/Pytorch-UNet
    (``bilinear=False``; built with ``variant="milesial"``, ``base_filters``,
    ``depth`` and ``input_channels`` read from the file) and wkentaro/pytorch-fcn FCN-8s/16s/32s (its BGR
    ``conv1_1`` converted so the model takes RGB). Every name and shape is
    checked before anything is written.

    Args:
        path: the PyTorch file.
        name: ``"deeplabv3plus"``, ``"unet"``, ``"fcn8s"``, ``"fcn16s"`` or ``"fcn32s"``.
        num_classes: classes of the checkpoint's classifier.
        backbone: as for :func:`fcn_tf.build_model` (DeepLabV3+: ``"mobilenet_v2"``).
        **options: builder options; those the file fixes default to the file's
            (e.g. ``output_stride=8`` must be given for a DeepLabV3+ trained
            with ``downsample_factor=8``: the weights are the same shapes).

    Returns:
        The Keras model with the weights loaded. Its input normalisation is
        that of the PyTorch code: ``x / 255`` for DeepLabV3+ and U-Net
        (``fcn_tf.Preprocessing()``), pytorch-fcn's mean for FCN
        (``fcn_tf.load_weights(...).preprocessing``).

    Raises:
        WeightsError: the file is not a supported state dict, is of another
            model than ``name``, or does not fit (names the key and shapes).

    Example:
        >>> import fcn_tf
        >>> model = fcn_tf.from_pytorch(  # doctest: +SKIP
        ...     "deeplab_mobilenetv2.pth", "deeplabv3plus", num_classes=21,
        ...     backbone="mobilenet_v2", output_stride=16)
    """
    state = read_state_dict(path)
    layout = detect_layout(state, path)
    if name not in layout.models:
        raise WeightsError(
            f"{path}: the file is a {layout.name} state dict, which loads into "
            f"{', '.join(map(repr, layout.models))}, not {name!r}. Pass name="
            f"{layout.models[0]!r}."
        )
    for key, value in _architecture_options(name, state).items():
        if key == "variant" and options.get(key, value) != value:
            raise WeightsError(
                f"{path}: {layout.name} weights need variant={value!r}, received "
                f"variant={options[key]!r}. Leave variant out."
            )
        options.setdefault(key, value)
    model = build_model(name, num_classes, backbone, **options)
    load_weights(model, path)
    return model
