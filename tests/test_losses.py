"""Losses with the ignore label, class weights and schedules, against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from fcn_tf import losses
from fcn_tf.config import ConfigError
from fcn_tf.config import run_config
from fcn_tf.config.run_config import parse_config
from fcn_tf.losses import (
    BinaryCrossEntropy,
    BootstrappedCrossEntropy,
    DiceLoss,
    FocalLoss,
    SegmentationCrossEntropy,
    WeightedSum,
    build_loss,
)
from fcn_tf.schedules import WarmupSchedule
from fcn_tf.utils.schema import parse_section

RNG = np.random.default_rng(0)
LABELS = np.array([[[0, 1, 2], [255, 1, 0]]])  # one ignored pixel
LOGITS = RNG.normal(size=(1, 2, 3, 3)).astype("float32")


def _ce(labels, logits):
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    safe = np.where(labels == 255, 0, labels)
    return -np.take_along_axis(log_p, safe[..., None], -1)[..., 0]


def test_cross_entropy_skips_ignored_pixels():
    valid = LABELS != 255
    expected = _ce(LABELS, LOGITS)[valid].mean()
    assert float(SegmentationCrossEntropy()(LABELS, LOGITS)) == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_class_weights_are_a_weighted_mean():
    weights = np.array([0.5, 2.0, 1.0])
    valid = LABELS != 255
    w = weights[np.where(valid, LABELS, 0)] * valid
    expected = (w * _ce(LABELS, LOGITS)).sum() / w.sum()
    loss = SegmentationCrossEntropy(class_weights=list(weights))
    assert float(loss(LABELS, LOGITS)) == pytest.approx(expected, rel=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy_and_smaller_otherwise():
    ce = float(SegmentationCrossEntropy()(LABELS, LOGITS))
    assert float(FocalLoss(gamma=0.0)(LABELS, LOGITS)) == pytest.approx(ce, rel=1e-5)
    assert float(FocalLoss(gamma=2.0)(LABELS, LOGITS)) < ce


@pytest.mark.parametrize("fraction", [0.2, 0.5, 1.0])
def test_bootstrapped_cross_entropy_averages_the_hardest_valid_pixels(fraction):
    labels = np.array([[[0, 1, 2, 255], [1, 0, 2, 1]], [[2, 2, 255, 0], [0, 1, 1, 2]]])
    logits = RNG.normal(size=(2, 2, 4, 3)).astype("float32")
    # An ignored pixel with a huge loss must not be picked.
    logits[0, 0, 3] = [-30.0, 30.0, -30.0]
    ce = _ce(labels, logits)[labels != 255]
    k = int(np.ceil(fraction * ce.size))
    expected = np.sort(ce)[::-1][:k].mean()
    loss = BootstrappedCrossEntropy(fraction=fraction)
    assert float(loss(labels, logits)) == pytest.approx(expected, rel=1e-5)
    if fraction == 1.0:
        plain = float(SegmentationCrossEntropy()(labels, logits))
        assert float(loss(labels, logits)) == pytest.approx(plain, rel=1e-5)


def test_bootstrapped_threshold_from_a_sample_on_large_batches():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, (4, 96, 512))  # 196,608 pixels: every 3rd one sampled
    labels[:, :8] = 255
    logits = rng.normal(size=(*labels.shape, 3)).astype("float32")
    ce = _ce(labels, logits)[labels != 255]
    exact = np.sort(ce)[::-1][: int(np.ceil(0.25 * ce.size))].mean()
    got = float(BootstrappedCrossEntropy(fraction=0.25)(labels, logits))
    assert got == pytest.approx(exact, rel=1e-2)


def test_bootstrapped_cross_entropy_gives_easy_pixels_no_gradient():
    labels = np.array([[[0, 1, 2, 0]]])
    logits = tf.Variable(np.array([[[[9.0, 0, 0], [0, 0.1, 0], [0, 0, 0.2], [0.3, 0, 0]]]],
                                  "float32"))
    with tf.GradientTape() as tape:
        value = BootstrappedCrossEntropy(fraction=0.5)(labels, logits)
    grad = tape.gradient(value, logits).numpy()[0, 0]
    assert np.all(grad[0] == 0.0)  # the easiest pixel (p ~ 1) is left out
    assert np.all(np.abs(grad[1]).sum() > 0) and np.all(np.abs(grad[2]).sum() > 0)


def test_bootstrapped_fraction_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], received 0"):
        BootstrappedCrossEntropy(fraction=0)


def test_binary_cross_entropy_of_one_logit():
    labels = np.array([[[0, 1], [255, 1]]])
    logits = np.array([[[[2.0], [-1.0]], [[5.0], [0.5]]]], "float32")
    z, t = logits[..., 0], labels
    per_pixel = np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0) - z * np.where(t == 255, 0, t)
    expected = per_pixel[t != 255].mean()
    assert float(BinaryCrossEntropy()(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_dice_is_near_zero_for_a_perfect_prediction_and_ignores_pixels():
    labels = np.array([[[0, 1], [1, 255]]])
    perfect = np.where(labels[..., None] == np.arange(2), 20.0, -20.0).astype("float32")
    perfect[0, 1, 1] = [-20.0, 20.0]  # wrong, but ignored
    assert float(DiceLoss(smooth=1e-6)(labels, perfect)) == pytest.approx(0.0, abs=1e-4)
    wrong = -perfect
    assert float(DiceLoss(smooth=1e-6)(labels, wrong)) > 0.9


def test_weighted_sum_and_builder():
    loss = build_loss([("cross_entropy", 1.0), ("dice", 0.5)], ignore_label=255)
    assert isinstance(loss, WeightedSum)
    expected = float(SegmentationCrossEntropy()(LABELS, LOGITS)) + 0.5 * float(DiceLoss()(LABELS, LOGITS))
    assert float(loss(LABELS, LOGITS)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"Unknown loss 'dise'.*Did you mean 'dice'"):
        build_loss([("dise", 1.0)], ignore_label=255)


@pytest.mark.parametrize(
    "kind,options,step,expected",
    [
        ("constant", {}, 70, 0.1),
        ("poly", {"power": 1.0}, 50, 0.05),
        ("poly", {"power": 0.9, "min_learning_rate": 0.01}, 100, 0.01),
        ("cosine", {}, 50, 0.05),
        ("step", {"boundaries": [30, 60], "gamma": 0.1}, 45, 0.01),
        ("step", {"boundaries": [30, 60], "gamma": 0.1}, 60, 0.001),
        ("poly", {"warmup_steps": 10, "power": 1.0}, 4, 0.05),  # (4 + 1) / 10 of 0.1
        ("poly", {"warmup_steps": 10, "power": 1.0}, 55, 0.05),  # half of the decay
    ],
)
def test_schedules(kind, options, step, expected):
    schedule = WarmupSchedule(0.1, total_steps=100, kind=kind, **options)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_median_frequency_sqrt_weights(tmp_path):
    from fcn_tf.config.run_config import parse_config
    from fcn_tf.training.setup import class_weights
    from train_fixtures import write_tiny_dataset

    root = write_tiny_dataset(str(tmp_path / "data"))
    base = {"data": {"format": "camvid", "root": root, "num_classes": 3}}
    full = class_weights(parse_config({**base, "train": {"loss": {"class_weights": "median_frequency"}}}))
    soft = class_weights(parse_config({**base, "train": {"loss": {"class_weights": "median_frequency_sqrt"}}}))
    np.testing.assert_allclose(soft, np.sqrt(full), rtol=1e-5)
    assert full[0] < 1.0 < full[1]  # background is the most frequent class


class _ScaledCrossEntropy(SegmentationCrossEntropy):
    """A loss registered by the test: cross-entropy times ``scale``."""

    def __init__(self, scale=1.0, ignore_label=255, class_weights=None, **kwargs):
        super().__init__(ignore_label, class_weights, name="scaled_ce", **kwargs)
        self.scale = scale

    def call(self, y_true, y_pred):
        return self.scale * super().call(y_true, y_pred)


@pytest.fixture
def scaled_ce():
    """``scaled_ce`` with the parameter ``train.loss.ce_scale``, registered for one test."""
    yield losses.register_loss("scaled_ce", _ScaledCrossEntropy, parameters=[losses.LossParameter(
        "ce_scale", "scale", 1.0, help="scaled_ce: factor", bounds={"above": 0.0})])
    del losses.LOSSES["scaled_ce"]


def test_a_registered_loss_is_a_config_choice_with_its_parameter(scaled_ce):
    section = run_config.loss_section()
    loss = parse_section(section, {"terms": [{"name": "scaled_ce"}], "ce_scale": 3.0}, "train.loss")
    assert loss.parameters() == {"bootstrap_fraction": 0.25, "focal_gamma": 2.0, "ce_scale": 3.0}
    built = build_loss([(t.name, t.weight) for t in loss.terms], ignore_label=255,
                       **loss.parameters())
    assert isinstance(built, _ScaledCrossEntropy) and built.scale == 3.0
    expected = 3.0 * float(SegmentationCrossEntropy()(LABELS, LOGITS))
    assert float(built(LABELS, LOGITS)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match=r"train.loss.ce_scale: must be > 0.0, received 0.0"):
        parse_section(section, {"ce_scale": 0.0}, "train.loss")


def test_the_config_lists_every_registered_loss(scaled_ce):
    config = parse_config({"train": {"loss": {"terms": [{"name": "scaled_ce"}]}}})
    assert config.train.loss.terms[0].name == "scaled_ce"
    with pytest.raises(ConfigError, match=r"expected one of 'cross_entropy', .*'dice', "
                                          r"'scaled_ce', received 'scaled'"):
        parse_config({"train": {"loss": {"terms": [{"name": "scaled"}]}}})


def test_a_loss_name_or_parameter_key_is_registered_once(scaled_ce):
    with pytest.raises(ValueError, match="a loss named 'focal' is registered already"):
        losses.register_loss("focal", FocalLoss)
    with pytest.raises(ValueError, match="parameter key 'focal_gamma' of loss 'other' is taken"):
        losses.register_loss("other", FocalLoss, parameters=[losses.LossParameter(
            "focal_gamma", "gamma", 2.0, help="")])
    with pytest.raises(ValueError, match="Unknown loss parameter 'focal_gama'.*'focal_gamma'"):
        build_loss([("focal", 1.0)], ignore_label=255, focal_gama=1.0)


def test_build_loss_passes_each_parameter_to_its_loss():
    built = build_loss([("focal", 1.0), ("bootstrapped_cross_entropy", 0.5)], ignore_label=7,
                       class_weights=[1.0, 2.0, 3.0], focal_gamma=1.5, bootstrap_fraction=0.5)
    focal, bootstrapped = built.losses
    assert (focal.gamma, focal.ignore_label, focal.class_weights) == (1.5, 7, [1.0, 2.0, 3.0])
    assert (bootstrapped.fraction, bootstrapped.ignore_label) == (0.5, 7)
    dice = build_loss([("dice", 1.0)], ignore_label=7, class_weights=[1.0, 2.0])
    assert dice.class_weights is None  # Dice takes no class weights
