"""``python -m fcn_tf.train``: run folders, resume after kill -9, divergence, config errors,
finishing a run whose end failed."""

import ast
import inspect
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from fcn_tf.config.run_config import load_config
from fcn_tf.data import split_files
from fcn_tf.data.decode import read_mask_array
from fcn_tf.models import get_model_spec
from fcn_tf.preprocessing import Preprocessing
from fcn_tf.runs.files import RUN_MARKER
from fcn_tf.train import main
from fcn_tf.training import setup, trainer
from fcn_tf.training.trainer import _sample_batch
from fcn_tf.utils.cli import progress_verbosity
from train_fixtures import tiny_config, write_config

TESTS = os.path.dirname(os.path.abspath(__file__))


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=TESTS)
    return env


def _history(run_dir):
    with open(os.path.join(run_dir, "state.json")) as f:
        return json.load(f)["history"]


def test_run_writes_everything_and_never_overwrites(tmp_path, capsys):
    path = write_config(tmp_path, tiny_config(tmp_path))
    assert main([str(path), "--quiet"]) == 0
    run = tmp_path / "runs" / "tiny"
    for name in ("best.keras", "config.json", "history.csv", "curves.png", "predictions.png",
                 "metrics.json", "state.json", "preprocessing.json"):
        assert (run / name).exists(), name
    state = json.loads((run / "state.json").read_text())
    assert state["finished"] and state["epochs_completed"] == 2
    assert [row["epoch"] for row in state["history"]] == [1, 2]
    assert {"loss", "val_mean_iou", "learning_rate"} <= set(state["history"][0])
    lines = (run / "history.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch,")
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["mean_iou"] <= 1.0
    assert len(metrics["confusion_matrix"]) == 3
    effective = json.loads((run / "config.json").read_text())
    assert effective["train"]["epochs"] == 2 and effective["data"]["num_classes"] == 3

    # A finished run is never touched: the same command makes a new folder.
    best_before = (run / "best.keras").stat().st_mtime
    capsys.readouterr()
    assert main([str(path), "--set", "train.epochs=1"]) == 0
    assert (tmp_path / "runs" / "tiny-2" / "state.json").exists()
    assert (run / "best.keras").stat().st_mtime == best_before
    # Output to a pipe or file (captured here): plain lines, no progress-bar redraws.
    out = capsys.readouterr().out
    assert "2/2 - " in out and "val_mean_iou" in out  # Keras: one line for the epoch
    assert "\r" not in out and "\x1b[" not in out


def test_final_model_on_train_plus_val_trains_on_both_and_scores_nothing(tmp_path, capsys):
    """The shape of configs/camvid.json: train includes val, no validation, no end score."""
    config = tiny_config(tmp_path, train={"epochs": 1, "validation_split": None},
                         eval={"split": None})
    config["data"]["splits"] = {"train": {"include": ["val"]}}
    path = write_config(tmp_path, config)
    assert main([str(path)]) == 0
    run = tmp_path / "runs" / "tiny"
    loaded = load_config(str(run / "config.json"))
    both = split_files(loaded.data, "train")
    assert len(both) == len(split_files(loaded.data, "val")) + len(
        [p for p in os.listdir(loaded.data.root + "/train")])
    assert (run / "best.keras").exists() and not (run / "metrics.json").exists()
    out = capsys.readouterr().out
    assert "val_mean_iou" not in out and not any(
        line.startswith("val:") for line in out.splitlines())  # no end-of-run score


class _Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_bars_only_on_a_terminal():
    assert progress_verbosity(False, _Stream(True)) == 1
    assert progress_verbosity(False, _Stream(False)) == 2
    assert progress_verbosity(True, _Stream(True)) == 0


def test_unfinished_run_with_other_config_is_refused(tmp_path, capsys):
    path = write_config(tmp_path, tiny_config(tmp_path))
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": {"epochs": 99}}))
    (run / "state.json").write_text(json.dumps({"epochs_completed": 1, "finished": False}))
    assert main([str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unfinished run started with a different config" in err and "--fresh" in err


def test_config_errors_exit_with_message(tmp_path, capsys):
    config = tiny_config(tmp_path)
    config["train"]["learning_rte"] = 0.1
    assert main([str(write_config(tmp_path, config))]) == 2
    assert "Did you mean 'learning_rate'?" in capsys.readouterr().err

    config = tiny_config(tmp_path)
    config["model"] = {"name": "fcn8s", "options": {"width_multiplier": 0.0625},
                       "weights": "missing/imagenet-vgg-verydeep-16.mat"}
    assert main([str(write_config(tmp_path, config))]) == 2
    assert "model.weights: " in capsys.readouterr().err

    config = tiny_config(tmp_path)
    config["model"]["options"] = {"base_filter": 4}
    assert main([str(write_config(tmp_path, config))]) == 2
    assert "Did you mean 'base_filters'?" in capsys.readouterr().err

    config = tiny_config(tmp_path)
    config["data"]["root"] = str(tmp_path / "nowhere")
    assert main([str(write_config(tmp_path, config))]) == 2
    assert "nowhere" in capsys.readouterr().err
    # None of the failed starts made a run folder.
    assert not (tmp_path / "runs").exists()


def test_divergence_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path, capsys):
    config = tiny_config(tmp_path, train={"epochs": 3, "optimizer": "sgd", "momentum": 0.0})
    path = write_config(tmp_path, config)
    assert main([str(path), "--quiet", "--set", "train.epochs=1"]) == 0
    # Continue the same data in a new run whose learning rate explodes after one good epoch.
    config["train"].update(learning_rate=1e30, epochs=2)
    config["output"]["name"] = "boom"
    config["model"]["init_checkpoint"] = str(tmp_path / "runs" / "tiny")
    assert main([str(write_config(tmp_path, config, "boom.json")), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Training diverged" in err and "epoch 1, step" in err and "learning_rate" in err
    assert "No checkpoint was written yet" in err and "last good checkpoint" not in err
    state = json.loads((tmp_path / "runs" / "boom" / "state.json").read_text()) \
        if (tmp_path / "runs" / "boom" / "state.json").exists() else {"epochs_completed": 0}
    assert state["epochs_completed"] == 0
    assert not (tmp_path / "runs" / "boom" / "best.keras").exists()


def _train_subprocess(path, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "fcn_tf.train", str(path), "--quiet", *extra],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_kill_minus_nine_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    config = tiny_config(tmp_path, train={"epochs": 3, "steps_per_epoch": 25, "batch_size": 2})
    config["data"]["augment"] = {"enabled": True, "scale": [0.8, 1.2]}
    reference = write_config(tmp_path, config, "reference.json")
    config["output"]["name"] = "killed"
    killed = write_config(tmp_path, config, "killed.json")

    process = _train_subprocess(killed)
    state = tmp_path / "runs" / "killed" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if state.exists() and json.loads(state.read_text()).get("epochs_completed", 0) >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # into the middle of epoch 2
    assert process.poll() is None, process.communicate()[0]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    completed = json.loads(state.read_text())["epochs_completed"]
    assert 1 <= completed < 3

    resumed = _train_subprocess(killed)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert f"Resuming after epoch {completed}" in out

    full = _train_subprocess(reference)
    out = full.communicate(timeout=300)[0]
    assert full.returncode == 0, out

    a, b = _history(tmp_path / "runs" / "killed"), _history(tmp_path / "runs" / "tiny")
    assert [r["epoch"] for r in a] == [1, 2, 3]
    for key in ("loss", "val_loss", "val_mean_iou", "learning_rate"):
        np.testing.assert_allclose([r[key] for r in a], [r[key] for r in b], rtol=1e-3, atol=1e-4,
                                   err_msg=key)


def test_prediction_pictures_spread_over_the_split_at_each_image_size(tmp_path):
    config = load_config(write_config(tmp_path, tiny_config(tmp_path)))
    files = split_files(config.data, "val")  # 4 images of 32x32
    images, masks = _sample_batch(config, Preprocessing.preset("unit"), 3)
    picks = [0, 2, 3]  # linspace(0, 3, 3) = 0, 1.5, 3 -> rounded
    assert len(images) == len(masks) == 3
    for index, image, mask in zip(picks, images, masks):
        assert image.shape == (32, 32, 3) and 0.0 <= image.min() and image.max() <= 1.0
        np.testing.assert_array_equal(mask, read_mask_array(files[index][1], config.data))


def test_a_failed_end_of_run_keeps_the_model_and_the_same_command_finishes_it(
        tmp_path, capsys, monkeypatch):
    path = write_config(tmp_path, tiny_config(tmp_path, train={"epochs": 1}))

    def broken(*args, **kwargs):
        raise ValueError("the evaluation broke")

    real = trainer.evaluate_split
    monkeypatch.setattr(trainer, "evaluate_split", broken)
    assert main([str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training finished (1 epochs, checkpoints kept in" in err
    assert "ValueError: the evaluation broke" in err and "run the same command again" in err
    run = tmp_path / "runs" / "tiny"
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_completed"] == 1 and not state["finished"]
    trained = (run / state["checkpoint"]).read_bytes()

    # Corrected (an eval key changed), on a folder of an older version (no marker): the same
    # command skips the training and finishes the run.
    monkeypatch.setattr(trainer, "evaluate_split", real)
    os.remove(run / RUN_MARKER)
    assert main([str(path), "--quiet", "--set", "eval.flip=true"]) == 0
    out = capsys.readouterr().out
    assert "Resuming after epoch 1" in out and "Training is complete (1 epochs)" in out
    assert "Changed since the run started (taken from this config): eval.flip" in out
    state = json.loads((run / "state.json").read_text())
    assert state["finished"] and len(state["history"]) == 1
    assert (run / state["checkpoint"]).read_bytes() == trained  # not trained again
    assert json.loads((run / "config.json").read_text())["eval"]["flip"] is True
    assert json.loads((run / "metrics.json").read_text())["mean_iou"] >= 0.0
    assert (run / RUN_MARKER).exists()


def test_preflight_returns_the_backbone_the_model_is_built_with(tmp_path):
    config = load_config(write_config(tmp_path, tiny_config(tmp_path)))
    assert config.model.backbone is None
    assert setup.preflight(config) == "unet_encoder"  # the model's default
    deeplab = {"name": "deeplabv3plus", "backbone": "xception", "options": {}}
    config = load_config(write_config(tmp_path, tiny_config(tmp_path, model=deeplab)))
    assert setup.preflight(config) == "xception"
    spec = get_model_spec("deeplabv3plus")
    assert spec.backbone_or_default(None) == "mobilenet_v2" == spec.backbones[0]
    assert spec.backbone_or_default("xception") == "xception"


def test_no_trainer_function_takes_more_than_five_parameters():
    """The trainer's state lives in TrainingSession, not in long parameter lists (issue 28)."""
    wide = []
    for module in (trainer, setup):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.FunctionDef):
                names = [a.arg for a in node.args.posonlyargs + node.args.args
                         + node.args.kwonlyargs if a.arg not in ("self", "cls")]
                if len(names) > 5:
                    wide.append(f"{module.__name__}.{node.name}({', '.join(names)})")
    assert wide == []
