"""Segmentation losses that honour the ignore label.

Labels are int ``[B, H, W]`` class ids with ``ignore_label`` marking pixels
that count nowhere; predictions are float logits ``[B, H, W, C]`` (``C = 1``
for a single binary logit). Every loss averages over the valid pixels of the
batch; with class weights, cross-entropy is ``sum(w_y * ce) / sum(w_y)`` as in
PyTorch's ``CrossEntropyLoss(weight=...)``.

Each loss the run config may name is registered once, at the end of this
module, with its parameters (:func:`register_loss`): the config's choices of
``train.loss.terms[].name`` and its ``train.loss`` parameter keys
(``focal_gamma``, ``bootstrap_fraction``) are read from :data:`LOSSES`.

Example:
    >>> import numpy as np
    >>> loss = SegmentationCrossEntropy(ignore_label=255)
    >>> y = np.array([[[0, 255]]])
    >>> logits = np.array([[[[0.0, 0.0], [9.0, -9.0]]]], "float32")
    >>> round(float(loss(y, logits)), 4)  # only the first pixel counts: ln 2
    0.6931
"""

import dataclasses

import keras
from keras import ops

from fcn_tf.utils.names import unknown_name_message


def _valid_and_labels(y_true, ignore_label):
    y_true = ops.cast(y_true, "int32")
    valid = ops.not_equal(y_true, ignore_label)
    labels = ops.where(valid, y_true, ops.zeros_like(y_true))
    return ops.cast(valid, "float32"), labels


def _weighted_mean(values, weights):
    """Per-pixel values whose plain mean is ``sum(w * v) / sum(w)``.

    Returning per-pixel values (not a scalar) lets Keras reduce them and scale
    the result for ``tf.distribute``; a scalar would skip that scaling and
    every replica's gradient would be counted in full.
    """
    size = ops.cast(ops.size(values), "float32")
    return values * weights * (size / ops.maximum(ops.sum(weights), 1.0))


class _SegmentationLoss(keras.losses.Loss):
    """Base: ignore label and optional per-class weights."""

    def __init__(self, ignore_label=255, class_weights=None, name=None, **kwargs):
        kwargs.setdefault("reduction", "sum_over_batch_size")
        super().__init__(name=name, **kwargs)
        self.ignore_label = int(ignore_label)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def _pixel_weights(self, valid, labels):
        if self.class_weights is None:
            return valid
        table = ops.convert_to_tensor(self.class_weights, "float32")
        return valid * ops.take(table, labels)

    def get_config(self):
        config = super().get_config()
        config.update(ignore_label=self.ignore_label, class_weights=self.class_weights)
        return config


@keras.saving.register_keras_serializable(package="fcn_tf")
class SegmentationCrossEntropy(_SegmentationLoss):
    """Softmax cross-entropy over classes, ignored pixels excluded."""

    def __init__(self, ignore_label=255, class_weights=None, name="cross_entropy", **kwargs):
        super().__init__(ignore_label, class_weights, name=name, **kwargs)

    def call(self, y_true, y_pred):
        valid, labels = _valid_and_labels(y_true, self.ignore_label)
        ce = ops.sparse_categorical_crossentropy(labels, ops.cast(y_pred, "float32"), from_logits=True)
        return _weighted_mean(ce, self._pixel_weights(valid, labels))


@keras.saving.register_keras_serializable(package="fcn_tf")
class BootstrappedCrossEntropy(_SegmentationLoss):
    """Cross-entropy of the hardest pixels only (online hard example mining).

    Per batch, the ``fraction`` of valid pixels with the largest (class
    weighted) cross-entropy is averaged and the rest is left out: the
    bootstrapped cross-entropy of Wu, Shen & van den Hengel, "High-performance
    semantic segmentation using very deep fully convolutional networks"
    (arXiv:1604.04339, 2016). The easy pixels of large classes (sky, road)
    stop dominating the gradient once they are right, without the fixed
    per-class weights that make rare classes claim their neighbours' pixels.

    The threshold is exact up to ``SAMPLE_SIZE`` pixels per batch; above, it
    is the same quantile of every n-th pixel (at least ``SAMPLE_SIZE`` of them).
    """

    SAMPLE_SIZE = 65536

    def __init__(self, fraction=0.25, ignore_label=255, class_weights=None,
                 name="bootstrapped_cross_entropy", **kwargs):
        super().__init__(ignore_label, class_weights, name=name, **kwargs)
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(
                f"BootstrappedCrossEntropy: fraction must be in (0, 1], received {fraction!r}."
            )
        self.fraction = float(fraction)

    def call(self, y_true, y_pred):
        valid, labels = _valid_and_labels(y_true, self.ignore_label)
        ce = ops.sparse_categorical_crossentropy(labels, ops.cast(y_pred, "float32"), from_logits=True)
        weights = self._pixel_weights(valid, labels)
        # Ignored pixels rank last (-1); the k-th largest weighted loss is the
        # threshold. Above SAMPLE_SIZE pixels it is taken from every n-th pixel:
        # a full top-k of a 8x288x384 batch costs about a fifth of a CPU step.
        weighted = ops.stop_gradient(ce * weights)
        scored = ops.reshape(ops.where(valid > 0, weighted, -1.0), (-1,))
        size = ops.size(scored)
        stride = ops.maximum(size // self.SAMPLE_SIZE, 1)
        sample = ops.take(scored, ops.arange(0, size, stride))
        count = ops.sum(ops.cast(ops.greater_equal(sample, 0.0), "float32"))
        k = ops.cast(ops.maximum(ops.ceil(count * self.fraction), 1.0), "int32")
        top, _ = ops.top_k(sample, ops.minimum(k, ops.size(sample)))
        threshold = top[-1]
        hard = ops.cast(ops.greater_equal(weighted, threshold), "float32")
        return _weighted_mean(ce, weights * hard)

    def get_config(self):
        return {**super().get_config(), "fraction": self.fraction}


@keras.saving.register_keras_serializable(package="fcn_tf")
class FocalLoss(_SegmentationLoss):
    """Focal loss (Lin et al., ICCV 2017): ``-(1 - p_y) ** gamma * log p_y``."""

    def __init__(self, gamma=2.0, ignore_label=255, class_weights=None, name="focal", **kwargs):
        super().__init__(ignore_label, class_weights, name=name, **kwargs)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        valid, labels = _valid_and_labels(y_true, self.ignore_label)
        log_p = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        log_p_y = ops.take_along_axis(log_p, ops.expand_dims(labels, -1), axis=-1)[..., 0]
        focal = -ops.power(1.0 - ops.exp(log_p_y), self.gamma) * log_p_y
        return _weighted_mean(focal, self._pixel_weights(valid, labels))

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="fcn_tf")
class BinaryCrossEntropy(_SegmentationLoss):
    """Sigmoid cross-entropy of a single logit channel; labels 0/1 or ignore.

    ``class_weights`` (two values) weight the negative and positive pixels.
    """

    def __init__(self, ignore_label=255, class_weights=None, name="binary_cross_entropy", **kwargs):
        super().__init__(ignore_label, class_weights, name=name, **kwargs)

    def call(self, y_true, y_pred):
        valid, labels = _valid_and_labels(y_true, self.ignore_label)
        logits = ops.cast(y_pred, "float32")[..., 0]
        targets = ops.cast(labels, "float32")
        bce = ops.maximum(logits, 0.0) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))
        return _weighted_mean(bce, self._pixel_weights(valid, labels))


@keras.saving.register_keras_serializable(package="fcn_tf")
class DiceLoss(_SegmentationLoss):
    """Soft Dice loss, ``1 - mean_c 2|P_c T_c| / (|P_c| + |T_c|)`` over valid pixels.

    With one logit channel it is the Dice of the foreground (sigmoid); with
    several it averages over classes (softmax).
    """

    def __init__(self, ignore_label=255, smooth=1.0, name="dice", **kwargs):
        super().__init__(ignore_label, None, name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        valid, labels = _valid_and_labels(y_true, self.ignore_label)
        logits = ops.cast(y_pred, "float32")
        channels = logits.shape[-1]
        if channels == 1:
            probs = ops.sigmoid(logits)
            target = ops.expand_dims(ops.cast(labels, "float32"), -1)
        else:
            probs = ops.softmax(logits, axis=-1)
            target = ops.one_hot(labels, channels)
        mask = ops.expand_dims(valid, -1)
        probs, target = probs * mask, target * mask
        axes = (0, 1, 2)
        intersection = ops.sum(probs * target, axis=axes)
        total = ops.sum(probs, axis=axes) + ops.sum(target, axis=axes)
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth)
        # Broadcast to pixels so that Keras' reduction (and distribution scaling) applies.
        return ops.ones_like(valid) * (1.0 - ops.mean(dice))

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="fcn_tf")
class WeightedSum(keras.losses.Loss):
    """``sum_i weight_i * loss_i``, e.g. binary cross-entropy plus Dice."""

    def __init__(self, losses, weights, name="weighted_sum", **kwargs):
        kwargs.setdefault("reduction", "sum_over_batch_size")
        super().__init__(name=name, **kwargs)
        self.losses = [
            keras.losses.deserialize(l) if isinstance(l, dict) else l for l in losses
        ]
        self.weights = [float(w) for w in weights]
        if len(self.losses) != len(self.weights):
            raise ValueError(
                f"WeightedSum needs one weight per loss, received {len(self.losses)} "
                f"losses and {len(self.weights)} weights."
            )

    def call(self, y_true, y_pred):
        return sum(w * loss(y_true, y_pred) for loss, w in zip(self.losses, self.weights))

    def get_config(self):
        return {
            **super().get_config(),
            "losses": [keras.losses.serialize(l) for l in self.losses],
            "weights": self.weights,
        }


@dataclasses.dataclass(frozen=True)
class LossParameter:
    """A number a loss takes, set in the run config as ``train.loss.<key>``.

    Attributes:
        key: the config key, e.g. ``"focal_gamma"`` (unique over all losses).
        argument: the loss class's argument it is passed as, e.g. ``"gamma"``.
        default: its value when the config leaves it out.
        help: one line for the config's messages.
        bounds: the config's checks of it (``min``, ``max``, ``above``:
            :mod:`fcn_tf.utils.schema`).
    """

    key: str
    argument: str
    default: float
    help: str
    bounds: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class LossEntry:
    """A registered loss: its class, its parameters and what it works on."""

    name: str
    loss_class: type
    parameters: tuple
    class_weights: bool
    one_logit: bool


# The losses ``train.loss.terms[].name`` may name, by name: see register_loss.
LOSSES = {}


def register_loss(name, loss_class, *, parameters=(), class_weights=True, one_logit=False):
    """Make ``loss_class`` a loss of the run config, named ``name``.

    The config's choices of ``train.loss.terms[].name`` are the registered
    names, and each parameter becomes a key of ``train.loss``.

    Args:
        name: the name in the config.
        loss_class: called as ``loss_class(ignore_label=..., [class_weights=...,]
            <argument>=<value> ...)``.
        parameters: its :class:`LossParameter` s.
        class_weights: whether it takes ``train.loss.class_weights``.
        one_logit: whether it works on a single binary logit (besides
            ``binary_cross_entropy`` itself).

    Raises:
        ValueError: ``name`` or a parameter's key is registered already.

    Example:
        >>> register_loss("smooth_ce", SegmentationCrossEntropy)  # doctest: +SKIP
    """
    if name in LOSSES:
        raise ValueError(f"register_loss: a loss named {name!r} is registered already "
                         f"({LOSSES[name].loss_class.__name__}). Choose another name.")
    taken = loss_parameters()
    for parameter in parameters:
        if parameter.key in taken:
            raise ValueError(f"register_loss: the parameter key {parameter.key!r} of loss "
                             f"{name!r} is taken already. Prefix it with the loss's name.")
    LOSSES[name] = LossEntry(name, loss_class, tuple(parameters), class_weights, one_logit)
    return LOSSES[name]


def loss_parameters():
    """``{config key: LossParameter}`` of every registered loss, in registration order."""
    return {p.key: p for entry in LOSSES.values() for p in entry.parameters}


register_loss("cross_entropy", SegmentationCrossEntropy)
register_loss("bootstrapped_cross_entropy", BootstrappedCrossEntropy, parameters=[LossParameter(
    "bootstrap_fraction", "fraction", 0.25, bounds={"above": 0.0, "max": 1.0},
    help="bootstrapped_cross_entropy: fraction of the valid pixels (the hardest) averaged")])
register_loss("focal", FocalLoss, parameters=[LossParameter(
    "focal_gamma", "gamma", 2.0, bounds={"min": 0.0}, help="focal loss focusing parameter")])
register_loss("binary_cross_entropy", BinaryCrossEntropy, one_logit=True)
register_loss("dice", DiceLoss, class_weights=False, one_logit=True)

# The losses that work on one binary logit (binary_cross_entropy and what may join it).
BINARY_LOSSES = tuple(name for name, entry in LOSSES.items() if entry.one_logit)


def build_loss(terms, *, ignore_label, class_weights=None, **parameters):
    """Build the loss from ``[(name, weight), ...]``; one term is returned as is.

    Names are those of :data:`LOSSES` (``cross_entropy``,
    ``bootstrapped_cross_entropy``, ``focal``, ``binary_cross_entropy``,
    ``dice``); ``parameters`` are their config keys (``focal_gamma=2.0``,
    ``bootstrap_fraction=0.25``), each left out taking its default.
    """
    known = loss_parameters()
    for key in parameters:
        if key not in known:
            raise ValueError(unknown_name_message("loss parameter", key, known))
    losses, weights = [], []
    for name, weight in terms:
        if name not in LOSSES:
            raise ValueError(unknown_name_message("loss", name, LOSSES))
        entry = LOSSES[name]
        arguments = {p.argument: parameters.get(p.key, p.default) for p in entry.parameters}
        if entry.class_weights:
            arguments["class_weights"] = class_weights
        losses.append(entry.loss_class(ignore_label=ignore_label, **arguments))
        weights.append(weight)
    if len(losses) == 1 and weights[0] == 1.0:
        return losses[0]
    return WeightedSum(losses, weights)
