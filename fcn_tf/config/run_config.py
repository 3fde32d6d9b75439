"""The full run configuration: sections model, data, train, eval, export, output.

Each section is a dataclass read key by key (:func:`parse_section`): an
unknown key fails with the valid keys and the closest match, a wrong type or
an out-of-range value fails naming the key. ``--set section.key=value``
overrides are applied to the raw document before validation, so they get the
same checks. The data section is :class:`fcn_tf.data.DataConfig`.
"""

import dataclasses
import json
import os
import typing

from fcn_tf.data.config import DataConfig, parse_data_config
from fcn_tf.losses import LOSSES, loss_parameters
from fcn_tf.precision import AUTO, PRECISIONS
from fcn_tf.utils.jsonc import MAX_DEPTH, load_jsonc, nesting_depth
from fcn_tf.utils.schema import ConfigError, parse_section, to_dict
from fcn_tf.utils.schema import field as _f
from fcn_tf.utils.names import unknown_key_message


@dataclasses.dataclass
class ModelConfig:
    """Which network to build and how to initialise it."""

    name: str = _f("unet", help="a name from fcn_tf.list_models()")
    backbone: str | None = _f(help="a name from fcn_tf.list_backbones(name); null = default")
    options: dict = _f(factory=dict, help="builder options, e.g. {\"base_filters\": 16}")
    weights: str | None = _f(path=True, keywords=("imagenet",),
                             help='backbone/model weights: "imagenet", or a .mat, .h5, .npz, '
                                  '.pth, .keras file')
    init_checkpoint: str | None = _f(
        path=True, help="a run folder or .keras file to start from (e.g. FCN-16s from FCN-32s)"
    )


# Class weights computed from the training masks: median frequency (Eigen &
# Fergus, 2015) and its square root, a softer weighting that pulls fewer
# boundary pixels into the rare classes.
CLASS_WEIGHTINGS = ("median_frequency", "median_frequency_sqrt")


@dataclasses.dataclass
class LossTerm:
    name: str = _f(
        "cross_entropy", choices=LOSSES.keys(),  # a live view: every loss registered
        help="loss function, a name of fcn_tf.losses.LOSSES",
    )
    weight: float = _f(1.0, min=0.0, help="weight in the sum")


@dataclasses.dataclass
class LossSection:
    """``train.loss`` without the losses' parameters (:func:`loss_section` adds them)."""

    terms: list[LossTerm] = _f(factory=lambda: [LossTerm()], help="weighted sum of losses")
    class_weights: str | list[float] | None = _f(
        help="null, \"median_frequency\", \"median_frequency_sqrt\" or one weight per class"
    )

    def __post_init__(self):
        if isinstance(self.class_weights, str) and self.class_weights not in CLASS_WEIGHTINGS:
            raise ConfigError(
                "train.loss.class_weights: expected null, \"median_frequency\", "
                "\"median_frequency_sqrt\" or a list of numbers, received "
                f"{self.class_weights!r}."
            )
        if not self.terms:
            raise ConfigError("train.loss.terms: expected at least one loss term.")

    def parameters(self):
        """``{key: value}`` of the losses' parameters, as :func:`fcn_tf.losses.build_loss` takes."""
        own = {f.name for f in dataclasses.fields(LossSection)}
        return {f.name: getattr(self, f.name)
                for f in dataclasses.fields(self) if f.name not in own}


def loss_section(parameters=None):
    """The ``train.loss`` dataclass: :class:`LossSection` and one key per loss parameter.

    Args:
        parameters: ``{key: LossParameter}``; by default those of every loss
            registered (:func:`fcn_tf.losses.loss_parameters`), e.g.
            ``focal_gamma`` and ``bootstrap_fraction``.
    """
    parameters = loss_parameters() if parameters is None else parameters
    fields = [(key, float, _f(p.default, help=p.help, **p.bounds))
              for key, p in parameters.items()]
    return dataclasses.make_dataclass(
        "LossConfig", fields, bases=(LossSection,),
        namespace={"__doc__": "train.loss: terms, class_weights, the losses' parameters."})


# Built once, from the losses registered when the config is first imported.
LossConfig = loss_section()


@dataclasses.dataclass
class TrainConfig:
    epochs: int = _f(10, min=1, help="number of epochs")
    batch_size: int = _f(8, min=1, help="global batch size")
    steps_per_epoch: int | None = _f(min=1, help="null = one pass over the training split")
    validation_split: str | None = _f("val", help="split evaluated after each epoch (null: none)")
    optimizer: str = _f("adam", choices=("sgd", "adam", "adamw"), help="optimizer")
    learning_rate: float = _f(1e-3, above=0.0, help="base learning rate")
    momentum: float = _f(0.9, min=0.0, max=1.0, help="SGD momentum")
    nesterov: bool = _f(False, help="SGD Nesterov momentum")
    weight_decay: float = _f(0.0, min=0.0, help="decoupled weight decay (adamw, sgd)")
    clipnorm: float | None = _f(min=0.0, help="clip each gradient to this norm")
    global_clipnorm: float | None = _f(min=0.0, help="clip the global gradient norm")
    schedule: str = _f(
        "constant", choices=("constant", "poly", "cosine", "step"), help="learning-rate decay"
    )
    warmup_epochs: float = _f(0.0, min=0.0, help="linear warmup from 0, in epochs")
    poly_power: float = _f(0.9, min=0.0, help="poly: lr * (1 - t/T) ** poly_power")
    min_learning_rate: float = _f(0.0, min=0.0, help="poly/cosine: final learning rate")
    step_epochs: list[int] = _f(factory=list, min=1, help="step: epochs at which lr *= step_gamma")
    step_gamma: float = _f(0.1, min=0.0, help="step: factor")
    ema: float | None = _f(
        min=0.0, below=1.0,
        help="momentum of an exponential moving average of the weights (e.g. 0.995), used "
        "for validation, checkpoints and the final model; null: off")
    loss: LossConfig = _f(factory=LossConfig)
    precision: str = _f(
        "float32", choices=(AUTO, *PRECISIONS),
        help="dtype policy; auto: mixed_bfloat16 where the hardware has bf16 units, else float32",
    )
    jit_compile: bool | typing.Literal["auto"] = _f(
        "auto", help="compile train/eval steps with XLA; auto: where a few timed steps are faster"
    )
    distribute: str = _f(
        "none", choices=("none", "mirrored", "multi_worker"), help="tf.distribute strategy"
    )
    freeze_backbone_epochs: int = _f(0, min=0, help="train only the head for this many epochs")
    seed: int = _f(0, min=0, max=2**32 - 1,
                   help="seed of initialisation, data order and augmentation")
    check_dataset: bool = _f(True, help="run the cheap dataset checks before training")
    divergence_factor: float | None = _f(
        100.0, min=1.0, help="stop when the running loss exceeds this many times the first "
        "epoch's loss (NaN and infinite losses always stop); null turns the ratio check off")

    def __post_init__(self):
        if self.ema is not None and self.freeze_backbone_epochs:
            raise ConfigError(
                f"train.ema: {self.ema} together with train.freeze_backbone_epochs: "
                f"{self.freeze_backbone_epochs} is not supported (the average would be taken "
                "over a frozen phase and a trained phase with different variables). Set one "
                "of them to null / 0.")


@dataclasses.dataclass
class EvalConfig:
    split: str | None = _f("val", help="split evaluated at the end of training (null: none, e.g. "
                                       "when val is part of training)")
    scales: list[float] = _f(factory=lambda: [1.0], min=0.1, max=4.0, min_items=1,
                             help="test-time scales")
    flip: bool = _f(False, help="also average the horizontally flipped prediction")
    window: tuple[int, int] | None = _f(min=8, max=16384,
                                        help="sliding-window size [h, w]; null = whole image")
    overlap: float = _f(0.5, min=0.0, max=0.9, help="sliding-window overlap fraction")


@dataclasses.dataclass
class ExportConfig:
    enabled: bool = _f(False, help="export a SavedModel at the end of training")
    tflite: bool = _f(False, help="also write a LiteRT (.tflite) file, fixed at data.crop_size")

    def __post_init__(self):
        if self.tflite and not self.enabled:
            raise ConfigError(
                "export.tflite: true, but export.enabled is false, so nothing would be "
                "exported. Set export.enabled to true as well (or tflite to false)."
            )


@dataclasses.dataclass
class OutputConfig:
    dir: str = _f("runs", path=True, help="folder holding run folders")
    name: str = _f("run", help="run folder name inside dir")
    tensorboard: bool = _f(True, help="write TensorBoard logs")
    sample_images: int = _f(4, min=0, max=32,
                            help="validation images drawn in predictions.png, spread over the split")

    def __post_init__(self):
        check_run_name(self.name)


def _shown(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


# Room for the "-N" suffix of later runs within a file system's 255-byte names.
MAX_NAME_BYTES = 200


def check_run_name(name):
    """Refuse an ``output.name`` that is not one plain folder name."""
    problem = None
    if name.strip() in ("", ".", ".."):
        problem = "it names no folder of its own"
    elif any(sep in name for sep in ("/", "\\")):
        problem = "it holds a path separator"
    elif any(ord(c) < 32 for c in name):
        problem = "it holds a control character"
    elif len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"it is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise ConfigError(
            f"output.name: expected one folder name (the run folder inside output.dir), "
            f"received {_shown(name)}: {problem}. Use a plain name such as \"run\" and put the "
            "parent folder in output.dir."
        )


SECTIONS = {
    "model": ModelConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "export": ExportConfig,
    "output": OutputConfig,
}
# Every top-level key of a config, in the order the effective config is written.
SECTION_NAMES = ("model", "data", "train", "eval", "export", "output")


@dataclasses.dataclass
class Config:
    """A parsed, validated run configuration."""

    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig
    export: ExportConfig
    output: OutputConfig
    source: str | None = None

    def to_dict(self):
        return {name: to_dict(getattr(self, name)) for name in SECTION_NAMES}


def _parse_value(text, item):
    """A ``--set`` value: JSON if it parses (numbers, true, lists), else a string."""
    too_deep = ConfigError(f"--set {_shown(item)}: the value nests lists or objects more "
                           f"than {MAX_DEPTH} levels deep.")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    except RecursionError:
        raise too_deep from None
    if nesting_depth(value) > MAX_DEPTH:
        raise too_deep
    return value


def apply_overrides(document, overrides):
    """Apply ``["train.epochs=3", "model.options.base_filters=8"]`` to a raw document."""
    if overrides and not isinstance(document, dict):
        raise ConfigError("expected a config object ({...}) to apply --set to, received "
                          f"{type(document).__name__}.")
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(
                f"--set {_shown(item)}: expected section.key=value, e.g. --set train.epochs=3."
            )
        path, value = item.split("=", 1)
        keys = path.strip().split(".")
        if len(keys) < 2 or not all(k.strip() for k in keys):
            raise ConfigError(
                f"--set {_shown(item)}: expected section.key=value, e.g. --set train.epochs=3."
            )
        node = document
        for key in keys[:-1]:
            if node.get(key) is None:  # absent or null: the defaults, to be overridden
                node[key] = {}
            if not isinstance(node[key], dict):
                raise ConfigError(f"--set {_shown(item)}: '{key}' is not a section (it holds "
                                  f"{_shown(node[key])}).")
            node = node[key]
        node[keys[-1]] = _parse_value(value, item)
    return document


def parse_config(document, base_dir=None, source=None):
    """Validate a raw config document (a dict) into a :class:`Config`."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source or 'config'}: expected a JSON object at top level.")
    for key in document:
        if key not in SECTION_NAMES:
            raise ConfigError(unknown_key_message(
                key, source or "config", sorted(SECTION_NAMES), kind="section", plural="sections"))
    sections = {
        name: parse_section(cls, document.get(name), name, base_dir)
        for name, cls in SECTIONS.items()
    }
    data = parse_data_config(document.get("data"), base_dir)
    return Config(data=data, source=source, **sections)


def load_config(path, overrides=()):
    """Read, override and validate the config file at ``path``."""
    path = os.fspath(path)
    document = apply_overrides(load_jsonc(path), overrides)
    base_dir = os.path.dirname(os.path.abspath(path))
    try:
        config = parse_config(document, base_dir)  # the message gets the path once, here
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    config.source = path
    return config
