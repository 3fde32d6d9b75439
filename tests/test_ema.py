"""``train.ema``: a moving average of the weights, validated, checkpointed and resumed."""

import json

import keras
import numpy as np
import pytest

from fcn_tf.config.run_config import ConfigError, parse_config
from fcn_tf.data import build_dataset
from fcn_tf.runs.folder import read_preprocessing, read_run_config
from fcn_tf.train import main
from fcn_tf.training import setup, trainer
from train_fixtures import tiny_config, write_config


def _state(run_dir):
    return json.loads((run_dir / "state.json").read_text())


def _train(tmp_path, name, **train):
    config = tiny_config(tmp_path, train={"epochs": 3, "batch_size": 4, "learning_rate": 0.02,
                                          **train})
    config["output"]["name"] = name
    assert main([str(write_config(tmp_path, config, f"{name}.json")), "--quiet"]) == 0
    return tmp_path / "runs" / name


def _val_mean_iou(run_dir, checkpoint):
    """``checkpoint`` scored on val the way training validates (same batches, same metric)."""
    config = read_run_config(str(run_dir))
    model = keras.saving.load_model(str(run_dir / checkpoint), compile=False)
    model.compile(loss=setup.build_loss_from_config(config), metrics=setup.build_metrics(config))
    val = build_dataset(config.data, "val", training=False, batch_size=config.train.batch_size,
                        preprocessing=read_preprocessing(str(run_dir)))
    return model.evaluate(val, verbose=0, return_dict=True)["mean_iou"]


def test_validation_and_best_checkpoint_hold_the_average(tmp_path):
    averaged = _train(tmp_path, "ema", ema=0.9)
    plain = _train(tmp_path, "plain")
    state = _state(averaged)
    # best.keras is the model that was validated: the average, not the training weights.
    assert _val_mean_iou(averaged, "best.keras") == pytest.approx(state["best"], abs=1e-6)
    # The average differs from training without it (same seed, same batches).
    a = [row["val_loss"] for row in state["history"]]
    b = [row["val_loss"] for row in _state(plain)["history"]]
    assert a[0] != pytest.approx(b[0], rel=1e-3)
    # The last checkpoint's model weights are the average: the optimizer's slots equal them
    # once training ends (Keras hands the average to the model at the end of fit).
    model = keras.saving.load_model(str(averaged / state["checkpoint"]), compile=True)
    optimizer = model.optimizer
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.9)
    for weight, average in zip(optimizer._trainable_variables,
                               optimizer._model_variables_moving_average):
        np.testing.assert_array_equal(np.asarray(weight), np.asarray(average))


def test_momentum_zero_is_training_without_an_average(tmp_path):
    # With momentum 0 the average is the weights themselves: every swap is exact.
    zero = _state(_train(tmp_path, "zero", ema=0.0))["history"]
    plain = _state(_train(tmp_path, "plain"))["history"]
    for key in ("loss", "val_loss", "val_mean_iou"):
        np.testing.assert_allclose([r[key] for r in zero], [r[key] for r in plain],
                                   rtol=1e-5, atol=1e-6, err_msg=key)


class _Interrupted(Exception):
    pass


def test_an_interrupted_run_resumes_with_the_training_weights(tmp_path, monkeypatch):
    reference = _state(_train(tmp_path, "reference", ema=0.8))["history"]

    def stop_after_epoch_two(self, epoch, logs=None):
        if epoch == 1:
            raise _Interrupted()

    with monkeypatch.context() as patch:
        patch.setattr(trainer._HistoryFiles, "on_epoch_end", stop_after_epoch_two)
        with pytest.raises(_Interrupted):
            _train(tmp_path, "resumed", ema=0.8)
    run = tmp_path / "runs" / "resumed"
    assert _state(run)["epochs_completed"] == 2
    # Same command: the checkpoint holds the average in the model and the training
    # weights in the optimizer; training must go on from the training weights.
    resumed = _state(_train(tmp_path, "resumed", ema=0.8))["history"]
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    for key in ("loss", "val_loss", "val_mean_iou"):
        np.testing.assert_allclose([r[key] for r in resumed], [r[key] for r in reference],
                                   rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("train, message", [
    ({"ema": 1.0}, "train.ema: must be < 1.0, received 1.0"),
    ({"ema": -0.5}, "train.ema: must be >= 0.0, received -0.5"),
    ({"ema": "yes"}, "train.ema"),
    ({"ema": 0.99, "freeze_backbone_epochs": 2}, "Set one of them to null / 0"),
])
def test_bad_ema_settings_are_refused_with_the_key(tmp_path, train, message):
    config = tiny_config(tmp_path, train=train)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_config(config)
