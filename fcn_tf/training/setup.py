"""Turn a validated :class:`~fcn_tf.config.run_config.Config` into training objects.

Each function reads the config fields it needs by name: the model, its
initial weights and preprocessing, the loss, the metrics, the optimizer with
its schedule, and the distribution strategy.
"""

import os

import keras
import tensorflow as tf

from fcn_tf.config import ConfigError
from fcn_tf.data import (
    check_dataset,
    class_pixel_frequencies,
    median_frequency_weights,
    split_files,
)
from fcn_tf.inference import InferenceOptions
from fcn_tf.losses import BINARY_LOSSES, build_loss
from fcn_tf.metrics import MeanIoU, PixelAccuracy
from fcn_tf.models import build_model, default_preprocessing
from fcn_tf.models.registry import validate_model_arguments
from fcn_tf.precision import gpu_devices
from fcn_tf.runs import resolve_checkpoint
from fcn_tf.schedules import WarmupSchedule
from fcn_tf.weights import IMAGENET, load_weights
from fcn_tf.weights.imagenet import imagenet_path
from fcn_tf.weights.keras_checkpoint import transfer_matching


def output_channels(config):
    """Logit channels: 1 when the loss is binary cross-entropy, else the class count."""
    names = [term.name for term in config.train.loss.terms]
    if "binary_cross_entropy" in names:
        if config.data.num_classes != 2:
            raise ConfigError(
                "train.loss.terms: binary_cross_entropy needs a two-class dataset "
                f"(one logit), but data.num_classes is {config.data.num_classes}. "
                "Use cross_entropy for several classes."
            )
        others = [n for n in names if n not in BINARY_LOSSES]
        if others:
            raise ConfigError(
                f"train.loss.terms: {', '.join(others)} cannot be combined with "
                "binary_cross_entropy (one logit). Use binary_cross_entropy and dice."
            )
        return 1
    return config.data.num_classes


def preflight(config):
    """Checks that cost seconds, run before a run folder is made.

    The model name, backbone and options, the weight and checkpoint paths,
    the final evaluation's options, every split the run reads (train,
    validation, the final evaluation's) and the cheap dataset checks; each
    failure names the setting or file. What only fails at the end of a run
    must fail here, before hours of training.

    Returns the backbone the model is built with (``model.backbone``, or the
    model's default when it is null).
    """
    try:
        InferenceOptions.from_eval_config(config.eval)
    except ValueError as error:
        raise ConfigError(f"eval.{error}") from None
    try:
        _, backbone = validate_model_arguments(
            config.model.name, output_channels(config), config.model.backbone, config.model.options
        )
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
    if config.model.weights == IMAGENET:
        # Found, or downloaded into the Keras cache, now: an offline machine fails
        # here, before a run folder exists.
        imagenet_path(build_model_from_config(config))
    for key in ("weights", "init_checkpoint"):
        path = getattr(config.model, key)
        if path and path != IMAGENET and not os.path.exists(path):
            raise FileNotFoundError(
                f"model.{key}: {path} does not exist. Check the path (relative paths are "
                "resolved against the config file's folder)."
            )
    augment = config.data.augment
    if augment.enabled and augment.cutmix > 0 and config.train.batch_size < 2:
        raise ConfigError(
            f"data.augment.cutmix is {augment.cutmix} with train.batch_size "
            f"{config.train.batch_size}: CutMix pastes boxes between the examples of a batch, "
            "so it needs a batch of two or more. Raise train.batch_size or set cutmix to 0.")
    used = ("train", config.train.validation_split, config.eval.split)
    splits = [split for split in dict.fromkeys(used) if split]
    if config.train.check_dataset:
        check_dataset(config.data, splits)
    else:
        for split in splits:  # listing only: the split exists and its files pair up
            split_files(config.data, split)
    return backbone


def build_model_from_config(config):
    """Build the model named in ``config.model`` for the dataset's classes and channels."""
    options = dict(config.model.options)
    channels = config.data.image_channels
    if options.setdefault("input_channels", channels) != channels:
        raise ConfigError(
            f"model.options.input_channels is {options['input_channels']} but "
            f"data.image_channels is {channels}; remove the model option (it follows the data)."
        )
    try:
        return build_model(
            config.model.name, output_channels(config), backbone=config.model.backbone, **options
        )
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
    except TypeError as error:  # an option of the wrong type, met deep inside the builder
        raise ConfigError(
            f"model.options: a value has the wrong type for model {config.model.name!r} "
            f"({error}); received {dict(config.model.options)}. Give numbers as numbers "
            "(8, not \"8\") and true/false unquoted."
        ) from error


def initialise_weights(model, config, backbone):
    """Load ``model.weights`` and/or ``model.init_checkpoint``; return the preprocessing.

    The preprocessing is ``backbone``'s default (the name :func:`preflight`
    returns) unless the weights file states its own (a MatConvNet ``.mat``
    file stores its mean pixel).
    """
    preprocessing = default_preprocessing(backbone, config.data.image_channels)
    if config.model.weights:
        loaded = load_weights(model, config.model.weights)
        if getattr(loaded, "preprocessing", None) is not None:
            preprocessing = loaded.preprocessing.for_channels(config.data.image_channels)
    if config.model.init_checkpoint:
        transfer_matching(model, resolve_checkpoint(config.model.init_checkpoint))
    return preprocessing


def class_weights(config):
    """Per-class loss weights from the config, or median frequency from the data."""
    spec = config.train.loss.class_weights
    if spec is None:
        return None
    if isinstance(spec, str):
        stats = class_pixel_frequencies(config.data, "train")
        weights = median_frequency_weights(stats.counts, stats.image_pixels)
        if spec == "median_frequency_sqrt":
            weights = weights**0.5
        return [round(float(w), 6) for w in weights]
    if len(spec) != config.data.num_classes:
        raise ConfigError(
            f"train.loss.class_weights: expected {config.data.num_classes} values "
            f"(one per class), received {len(spec)}."
        )
    return list(spec)


def build_loss_from_config(config, weights=None):
    loss = config.train.loss
    return build_loss(
        [(term.name, term.weight) for term in loss.terms],
        ignore_label=config.data.ignore_label,
        class_weights=weights,
        **loss.parameters(),
    )


def build_metrics(config):
    n, ignore = config.data.num_classes, config.data.ignore_label
    return [MeanIoU(n, ignore), PixelAccuracy(n, ignore)]


def build_optimizer(config, steps_per_epoch):
    """The optimizer of ``config.train`` with its warmup + decay schedule."""
    train = config.train
    schedule = WarmupSchedule(
        train.learning_rate,
        total_steps=train.epochs * steps_per_epoch,
        kind=train.schedule,
        warmup_steps=round(train.warmup_epochs * steps_per_epoch),
        power=train.poly_power,
        min_learning_rate=train.min_learning_rate,
        boundaries=[e * steps_per_epoch for e in train.step_epochs],
        gamma=train.step_gamma,
    )
    common = {"clipnorm": train.clipnorm, "global_clipnorm": train.global_clipnorm}
    if train.ema is not None:
        # Keras keeps the average in the optimizer; callbacks.AveragedWeights
        # swaps it into the model for validation and checkpoints.
        common.update(use_ema=True, ema_momentum=train.ema)
    if train.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=train.momentum, nesterov=train.nesterov,
            weight_decay=train.weight_decay or None, **common,
        )
    elif train.optimizer == "adam":
        optimizer = keras.optimizers.Adam(schedule, weight_decay=train.weight_decay or None, **common)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=train.weight_decay, **common)
    if train.weight_decay:
        # No decay on biases and normalisation parameters.
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def build_strategy(name):
    """The ``tf.distribute`` strategy for ``train.distribute``."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = gpu_devices() or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.MultiWorkerMirroredStrategy()
