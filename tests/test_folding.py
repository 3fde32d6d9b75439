"""BatchNorm folded into convolutions: same outputs for every registered model, fewer layers."""

import json

import keras
import numpy as np
import pytest

import fcn_tf
from fcn_tf.exporting import export_checkpoint
from fcn_tf.models.folding import FoldedBatchNorm, fold_batch_norm, foldable_pairs
from model_cases import CASE_IDS, CASES


def _randomised(model, seed=0):
    """Non-trivial BatchNorm statistics and no all-zero kernels (FCN score layers)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for weight in layer.weights:
            shape = weight.shape
            if isinstance(layer, keras.layers.BatchNormalization):
                positive = "variance" in weight.path or "gamma" in weight.path
                value = rng.uniform(0.5, 1.5, shape) if positive else rng.normal(0, 0.3, shape)
                weight.assign(value.astype("float32"))
            elif not np.asarray(weight).any() and len(shape) > 1:
                weight.assign(rng.normal(0, 0.05, shape).astype("float32"))
    return model


@pytest.mark.parametrize("name,backbone,options", CASES, ids=CASE_IDS)
def test_folded_model_equals_the_model(name, backbone, options):
    model = _randomised(fcn_tf.build_model(name, 4, backbone, **options))
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    folded = fold_batch_norm(model)
    pairs = foldable_pairs(model)
    left = [l for l in folded.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(left) == len(norms) - len(pairs)
    assert sum(isinstance(l, FoldedBatchNorm) for l in folded.layers) == len(pairs)
    if name in ("unet", "fpn", "deeplabv3plus"):
        assert len(pairs) == len(norms) > 0  # every normalisation follows a convolution
    x = np.random.default_rng(1).uniform(0, 1, (2, 37, 45, 3)).astype("float32")
    expected, got = np.asarray(model(x)), np.asarray(folded(x))
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    assert [l.name for l in folded.layers] == [l.name for l in model.layers]


def test_a_normalisation_after_an_activation_or_a_shared_convolution_is_left():
    inputs = keras.Input((8, 8, 2))
    relu = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="relu_conv")(inputs)
    after_relu = keras.layers.BatchNormalization(name="bn_after_relu")(relu)
    shared = keras.layers.Conv2D(3, 1, name="shared")(after_relu)
    branch = keras.layers.BatchNormalization(name="bn_branch")(shared)
    outputs = keras.layers.Add()([branch, shared])
    model = _randomised(keras.Model(inputs, outputs))
    assert foldable_pairs(model) == {}
    assert fold_batch_norm(model) is model  # already float32, nothing to fold


def test_export_folds_by_default_and_records_it(tmp_path):
    model = _randomised(fcn_tf.build_model("unet", 3, base_filters=4, depth=2))
    model.save(tmp_path / "m.keras")
    export_checkpoint(str(tmp_path / "m.keras"), str(tmp_path / "folded"))
    export_checkpoint(str(tmp_path / "m.keras"), str(tmp_path / "kept"), fold_batch_norm=False)
    folded = json.loads((tmp_path / "folded" / "metadata.json").read_text())
    kept = json.loads((tmp_path / "kept" / "metadata.json").read_text())
    norms = sum(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)
    assert folded["batch_norm_folded"] == norms > 0 and kept["batch_norm_folded"] == 0
