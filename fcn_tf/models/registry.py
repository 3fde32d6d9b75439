"""The model registry and the one public builder, :func:`build_model`."""

import dataclasses
import functools
import inspect

from fcn_tf.backbones import BACKBONE_PREPROCESSING
from fcn_tf.models.ddrnet import build_ddrnet
from fcn_tf.models.deeplabv3plus import build_deeplabv3plus
from fcn_tf.models.fcn import build_fcn
from fcn_tf.models.fcn_deconv import build_fcn_deconv
from fcn_tf.models.fpn import build_fpn
from fcn_tf.models.unet import build_unet
from fcn_tf.preprocessing import Preprocessing
from fcn_tf.utils.names import unknown_key_message, unknown_name_message


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, the backbones it accepts and a summary."""

    name: str
    builder: object
    backbones: tuple
    summary: str

    @property
    def default_backbone(self):
        return self.backbones[0]

    def backbone_or_default(self, backbone):
        """``backbone``, or this model's default backbone when it is ``None``."""
        return self.default_backbone if backbone is None else backbone

    @property
    def options(self):
        """Keyword options the builder accepts besides ``num_classes``/``backbone``."""
        target = self.builder
        fixed = {}
        if isinstance(target, functools.partial):
            fixed = target.keywords
            target = target.func
        params = inspect.signature(target).parameters
        return sorted(
            p for p in params if p not in ("num_classes", "backbone") and p not in fixed
        )


MODELS = {}


def register_model(name, builder, backbones, summary):
    """Add a model to the registry (its builder takes ``num_classes, backbone, **options``)."""
    if name in MODELS:
        raise ValueError(f"A model named {name!r} is already registered.")
    MODELS[name] = ModelSpec(name, builder, tuple(backbones), summary)


for _stride in (32, 16, 8):
    register_model(
        f"fcn{_stride}s",
        functools.partial(build_fcn, stride=_stride),
        ("vgg16", "vgg19"),
        f"FCN-{_stride}s (Long et al. 2015), reference Caffe geometry",
    )
register_model(
    "fcn_deconv", build_fcn_deconv, ("vgg16", "vgg19"),
    "All-deconvolution FCN (five 3x3 stride-2 transposed convolutions)",
)
register_model(
    "fpn", build_fpn, ("resnet_lite",),
    "FPN + pyramid pooling on a small ResNet (compact UPerNet, for CPU training from scratch)",
)
register_model(
    "ddrnet_lite", build_ddrnet, ("resnet_lite",),
    "Dual-resolution network after DDRNet-23-slim (stride-8 detail branch beside a "
    "stride-32 context branch, for CPU training from scratch)",
)
register_model("unet", build_unet, ("unet_encoder",), "U-Net (Ronneberger et al. 2015)")
register_model(
    "deeplabv3plus", build_deeplabv3plus, ("mobilenet_v2", "xception"),
    "DeepLabV3+ (Chen et al. 2018), ASPP + decoder",
)


def get_model_spec(name):
    if name not in MODELS:
        raise ValueError(unknown_name_message("model", name, MODELS))
    return MODELS[name]


def list_models():
    """Names of all registered models, sorted."""
    return sorted(MODELS)


def list_backbones(model=None):
    """Backbones accepted by ``model`` (default first), or all of them."""
    if model is None:
        return sorted({b for spec in MODELS.values() for b in spec.backbones})
    return list(get_model_spec(model).backbones)


def validate_model_arguments(name, num_classes, backbone=None, options=None):
    """Check a model name, backbone, class count and options without building.

    Returns ``(spec, backbone)`` with the default backbone filled in; raises
    ``ValueError`` with the valid choices and the closest match otherwise.
    """
    spec = get_model_spec(name)
    backbone = spec.backbone_or_default(backbone)
    if backbone not in spec.backbones:
        message = unknown_name_message(f"backbone for {name!r}", backbone, spec.backbones)
        raise ValueError(message)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive integer, received {num_classes!r}."
        )
    valid = spec.options
    for key in options or {}:
        if key not in valid:
            raise ValueError(unknown_key_message(
                key, f"the options of model {name!r}", valid, kind="option", plural="options"))
    return spec, backbone


def build_model(name, num_classes, backbone=None, **options):
    """Build a registered segmentation model.

    Args:
        name: a name from :func:`list_models`, e.g. ``"fcn8s"``, ``"unet"``,
            ``"deeplabv3plus"``.
        num_classes: number of output classes (logit channels); 1 for a
            single binary logit.
        backbone: a name from ``list_backbones(name)``; ``None`` takes the
            model's default (the first listed).
        **options: the builder's keyword options (e.g. ``input_channels``,
            ``output_stride``, ``base_filters``); unknown ones raise an error
            listing the valid ones.

    Returns:
        A functional ``keras.Model`` mapping ``(B, H, W, C)`` normalised images
        to ``(B, H, W, num_classes)`` float32 logits at the input's size.

    Example:
        >>> import fcn_tf
        >>> model = fcn_tf.build_model("unet", 2, base_filters=4, depth=2)
        >>> model.output_shape
        (None, None, None, 2)
    """
    spec, backbone = validate_model_arguments(name, num_classes, backbone, options)
    return spec.builder(num_classes, backbone, **options)


def default_preprocessing(backbone, channels=3):
    """The :class:`~fcn_tf.preprocessing.Preprocessing` a backbone's weights expect."""
    if backbone not in BACKBONE_PREPROCESSING:
        raise ValueError(unknown_name_message("backbone", backbone, BACKBONE_PREPROCESSING))
    return Preprocessing.preset(BACKBONE_PREPROCESSING[backbone], channels)
