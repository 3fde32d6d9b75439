"""Run folders: the lock, folders made only after every check, the bad inputs of issue 19,
which folders are run folders, file modes and valid JSON (issue 26)."""

import json
import os
import re
import stat
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from fcn_tf import evaluate, predict, train
from fcn_tf.config.run_config import load_config
from fcn_tf.runs import RunFolderLocked, RunLock
from fcn_tf.runs.files import (
    RUN_MARKER,
    DamagedFileError,
    atomic_write_json,
    atomic_write_text,
    current_umask,
    make_temp_dir,
)
from fcn_tf.runs.folder import (
    RunFolderError,
    choose_run_dir,
    create_run_dir,
    is_run_folder,
    read_state,
)
from fcn_tf.training.callbacks import StopOnNaN
from test_inference import make_run_folder
from train_fixtures import tiny_config, write_config

HOLD = textwrap.dedent("""
    import sys, time
    from fcn_tf.runs.lock import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(60)
""")


def _holder(folder):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_process_fails_at_once_naming_the_holder_and_a_dead_holder_is_taken_over(
        tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(RunFolderLocked, match=f"in use by process {holder.pid} on "):
            RunLock(str(tmp_path)).acquire()
    finally:
        holder.kill()
        holder.wait()
    # The dead holder's lock file (its pid still inside) is taken over.
    assert str(holder.pid) in (tmp_path / ".lock").read_text()
    with RunLock(str(tmp_path)):
        assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())


def test_train_refuses_a_run_folder_another_trainer_holds(tmp_path, capsys):
    path = write_config(tmp_path, tiny_config(tmp_path))
    folder = tmp_path / "runs" / "tiny"
    folder.mkdir(parents=True)  # an unfinished run that stopped before its first epoch
    holder = _holder(folder)
    try:
        assert train.main([str(path), "--quiet"]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"in use by process {holder.pid}" in err
    assert sorted(os.listdir(folder)) == [".lock"]  # nothing written


def test_a_bad_weights_file_leaves_no_run_folder(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", conv=np.zeros((2, 2), np.int64))
    config = tiny_config(tmp_path, model={"name": "unet", "weights": str(tmp_path / "bad.npz"),
                                          "options": {"base_filters": 4, "depth": 2}})
    assert train.main([str(write_config(tmp_path, config)), "--quiet"]) == 2
    assert "bad.npz" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or os.listdir(tmp_path / "runs") == []


def test_output_dir_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "runs").write_text("not a folder")
    assert train.main([str(write_config(tmp_path, tiny_config(tmp_path))), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "output.dir" in err and "is a file" in err and "Traceback" not in err


class _Model:
    stop_training = False


@pytest.mark.parametrize("loss, reference, stops", [
    (float("nan"), None, True), (float("inf"), 1.0, True), (8e10, None, False),
    (8e10, 1.0, True), (99.0, 1.0, False), (101.0, 1.0, True)])
def test_divergence_guard_stops_at_nan_inf_or_100x_the_first_epoch(loss, reference, stops):
    guard = StopOnNaN(lambda: reference, factor=100.0)
    guard.set_model(_Model())
    guard.on_epoch_begin(1)
    guard.on_train_batch_end(4, {"loss": loss})
    assert guard.model.stop_training is stops and (guard.failure is not None) is stops
    if stops and reference is not None and np.isfinite(loss):
        message = guard.message("RUN", checkpoint_kept=True)
        assert "100x the first epoch's" in message and "last good checkpoint is kept" in message
    # In the first epoch the first step's loss is the reference.
    early = StopOnNaN(lambda: None, factor=100.0)
    early.set_model(_Model())
    early.on_epoch_begin(0)
    early.on_train_batch_end(0, {"loss": 1.1})
    early.on_train_batch_end(1, {"loss": 50.0})
    assert early.failure is None
    early.on_train_batch_end(2, {"loss": 8e10})
    assert early.failure == (1, 3, 8e10, 1.1)
    assert "more than 100x the first step's 1.1" in early.message("RUN", checkpoint_kept=False)
    off = StopOnNaN(lambda: reference, factor=None)
    off.set_model(_Model())
    off.on_train_batch_end(0, {"loss": 8e10})
    assert off.failure is None


def test_evaluate_refuses_a_checkpoint_with_another_class_count(tmp_path, capsys):
    run_dir, _, _ = make_run_folder(tmp_path)  # 3 classes
    config = tiny_config(tmp_path)
    config["data"]["num_classes"] = 5
    path = write_config(tmp_path, config, "five.json")
    assert evaluate.main([str(path), "--checkpoint", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "predicts 3 classes but the config's data.num_classes is 5" in err
    assert "--checkpoint" in err
    assert not (run_dir / "eval-val").exists()


def test_predict_refuses_a_checkpoint_whose_run_config_disagrees(tmp_path, capsys):
    run_dir, _, _ = make_run_folder(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    config["data"].update(num_classes=4, class_names=None, colors=None)
    (run_dir / "config.json").write_text(json.dumps(config))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert predict.main(["--model", str(run_dir), str(tmp_path / "a.png"), "--out",
                         str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "predicts 3 classes but the config's data.num_classes is 4" in err


def test_predict_skip_invalid_goes_on_lists_bad_files_and_exits_non_zero(tmp_path, capsys):
    run_dir, _, _ = make_run_folder(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((16, 16, 3), 90, np.uint8))
    (images / "b.png").write_bytes(b"not a png")
    cv2.imwrite(str(images / "c.png"), np.full((16, 16, 3), 30, np.uint8))
    out = tmp_path / "out"
    assert predict.main(["--model", str(run_dir), str(images), "--out", str(out)]) == 2
    assert "b.png: not a readable image" in capsys.readouterr().err
    assert predict.main(["--model", str(run_dir), str(images), "--out", str(out),
                         "--skip-invalid"]) == 1
    captured = capsys.readouterr()
    assert "Skipped 1 unreadable file(s)" in captured.err and "b.png" in captured.err
    assert {"a.png", "c.png"} <= set(os.listdir(out)) and "b.png" not in os.listdir(out)


def test_an_npz_of_integer_arrays_is_refused_not_truncated(tmp_path):
    import fcn_tf
    from fcn_tf.weights import WeightsError

    model = fcn_tf.build_model("fcn32s", 3, width_multiplier=0.0625)
    path = tmp_path / "ints.npz"
    np.savez(path, **{"conv1_1.weight": np.ones((4, 3, 3, 3), np.int64),
                      "conv1_1.bias": np.ones((4,), np.int64)})
    with pytest.raises(WeightsError, match="conv1_1.weight.*int64 array; weights must be floating"):
        fcn_tf.load_weights(model, str(path))


def _data_config(tmp_path, **data):
    from fcn_tf.data import parse_data_config

    section = dict(tiny_config(tmp_path)["data"], **data)
    return parse_data_config(section)


def _masks(config, split="train"):
    import tensorflow as tf

    from fcn_tf.data import build_dataset
    from fcn_tf.preprocessing import Preprocessing

    ds = build_dataset(config, split, training=False, batch_size=1,
                       preprocessing=Preprocessing.preset("unit"))
    return [tf.convert_to_tensor(mask)[0].numpy() for _, mask in ds]


def test_16_bit_id_masks_are_read_as_their_values_or_refused_by_verify_and_training(tmp_path):
    import tensorflow as tf

    from fcn_tf.data import split_files, verify

    config = _data_config(tmp_path)
    first_mask = split_files(config, "train")[0][1]
    ids = cv2.imread(first_mask, cv2.IMREAD_UNCHANGED)
    assert ids.max() == 2
    cv2.imwrite(first_mask, ids.astype(np.uint16))  # a 16-bit PNG of the same ids
    assert cv2.imread(first_mask, cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert verify(config, ["train"]).ok
    np.testing.assert_array_equal(_masks(config)[0], ids)
    wide = ids.astype(np.uint16)
    wide[0, 0] = 300
    cv2.imwrite(first_mask, wide)
    report = verify(config, ["train"])
    assert not report.ok and "values up to 300" in str(report)
    with pytest.raises(tf.errors.InvalidArgumentError, match="16-bit mask with values above 255"):
        _masks(config)


def test_a_pipeline_data_check_during_training_is_a_clear_error(tmp_path, capsys):
    from fcn_tf.data import split_files

    config = tiny_config(tmp_path, train={"epochs": 1, "batch_size": 4, "check_dataset": False,
                                          "jit_compile": False})
    from fcn_tf.data import parse_data_config

    first_mask = split_files(parse_data_config(config["data"]), "train")[0][1]
    wide = cv2.imread(first_mask, cv2.IMREAD_UNCHANGED).astype(np.uint16)
    wide[0, 0] = 300
    cv2.imwrite(first_mask, wide)
    assert train.main([str(write_config(tmp_path, config)), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "a data file failed a check during training: [16-bit mask with values above 255" in err
    assert "000.png" in err


def test_rgb_colour_masks_read_as_ids_get_a_hint(tmp_path):
    from fcn_tf.data import split_files, verify

    config = _data_config(tmp_path)
    first_mask = split_files(config, "train")[0][1]
    ids = cv2.imread(first_mask, cv2.IMREAD_UNCHANGED)
    colours = np.array([[0, 0, 0], [0, 0, 200], [0, 200, 0]], np.uint8)[ids]  # BGR
    cv2.imwrite(first_mask, colours)
    report = str(verify(config, ["train"]))
    assert "mask is a RGB image" in report and '"mask_encoding": "rgb"' in report


def test_gif_images_are_listed(tmp_path):
    from PIL import Image

    from fcn_tf.data import split_files

    config = _data_config(tmp_path)
    image_path, _ = split_files(config, "val")[0]
    Image.open(image_path).convert("RGB").save(image_path[:-4] + ".gif")
    os.remove(image_path)
    assert any(p.endswith(".gif") for p, _ in split_files(config, "val"))


FULL_DISK = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))  # as `ulimit -f`
    from fcn_tf import train
    sys.exit(train.main([sys.argv[1], "--quiet"]))
""")


def test_a_file_size_limit_while_training_is_a_clear_error(tmp_path):
    path = write_config(tmp_path, tiny_config(tmp_path, train={"epochs": 1, "batch_size": 4,
                                                                "learning_rate": 0.01,
                                                                "jit_compile": False}))
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "disk full or file size limit" in result.stderr and "Traceback" not in result.stderr
    assert "run the same command again to resume" in result.stderr


def test_a_finite_exploding_loss_stops_training_and_writes_no_checkpoint_of_it(tmp_path, capsys):
    config = tiny_config(tmp_path, train={"epochs": 2, "batch_size": 4, "optimizer": "adam",
                                          "learning_rate": 1e5, "jit_compile": False})
    assert train.main([str(write_config(tmp_path, config)), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Training diverged: the loss reached" in err and "more than 100x the first" in err
    assert "No checkpoint was written yet" in err
    run_dir = tmp_path / "runs" / "tiny"
    assert not (run_dir / "best.keras").exists() and os.listdir(run_dir / "checkpoints") == []


def _unfinished_run(parent, saved_config):
    folder = parent / "tiny"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(saved_config))
    (folder / "state.json").write_text(json.dumps({"epoch": 1, "finished": False}))
    return folder


def test_a_run_started_before_a_config_key_existed_resumes_when_the_key_is_at_its_default(
        tmp_path):
    effective = load_config(str(write_config(tmp_path, tiny_config(tmp_path)))).to_dict()
    assert effective["train"]["loss"]["bootstrap_fraction"] == 0.25  # the key's default
    older = json.loads(json.dumps(effective))
    del older["train"]["loss"]["bootstrap_fraction"]  # a run folder from before the key
    del older["data"]["augment"]["elastic"]
    folder = _unfinished_run(tmp_path / "runs", older)
    assert choose_run_dir(str(tmp_path / "runs"), "tiny", effective) == (str(folder), True)

    changed = json.loads(json.dumps(effective))
    changed["train"]["loss"]["bootstrap_fraction"] = 0.5  # not the default: another config
    with pytest.raises(ValueError, match=r"differs at: train\.loss\.bootstrap_fraction\)"):
        choose_run_dir(str(tmp_path / "runs"), "tiny", changed)
    changed = json.loads(json.dumps(effective))
    changed["train"]["epochs"] = 3  # a key the saved config has, changed
    with pytest.raises(ValueError, match=r"differs at: train\.epochs\)"):
        choose_run_dir(str(tmp_path / "runs"), "tiny", changed)


def _tree(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_only_run_folders_are_written_into_and_only_eval_export_output_may_change(tmp_path):
    effective = load_config(str(write_config(tmp_path, tiny_config(tmp_path)))).to_dict()
    parent = tmp_path / "runs"
    mine = parent / "tiny"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "history.csv").write_text("epoch,loss\n1,0.5\n")
    (mine / "checkpoints" / "epoch0001.keras").write_bytes(b"my model")
    before = _tree(parent)
    with pytest.raises(RunFolderError, match=r"tiny exists but is not a run folder of fcn_tf "
                                             r"\(it holds checkpoints, history.csv and no "
                                             r"fcn_tf-run.json\)"):
        choose_run_dir(str(parent), "tiny", effective, create=True)
    assert _tree(parent) == before and not is_run_folder(str(mine))
    # fresh=True starts beside it, and the new folder carries the marker.
    assert choose_run_dir(str(parent), "tiny", effective, fresh=True) == (
        str(parent / "tiny-2"), False)
    assert is_run_folder(str(parent / "tiny-2")) and _tree(parent / "tiny") == _tree(mine)

    # The documented way to resume an unrecognised older run folder: an empty marker.
    (mine / RUN_MARKER).write_text("")
    assert is_run_folder(str(mine))
    # A run folder of an older version, without the marker: recognised by its files.
    older = _unfinished_run(tmp_path / "older", effective)
    assert is_run_folder(str(older))
    changed = json.loads(json.dumps(effective))
    changed["eval"].update(scales=[0.75, 1.0], flip=True)  # the end of the run: may change
    changed["export"]["enabled"] = True
    changed["output"]["sample_images"] = 0
    assert choose_run_dir(str(tmp_path / "older"), "tiny", changed) == (str(older), True)
    changed["data"]["crop_size"] = [16, 16]  # what is trained on: may not
    with pytest.raises(ValueError, match=r"differs at: data\.crop_size\). Run with the same "
                                         r"config to resume it \(only the eval, export and "
                                         r"output sections may change\)"):
        choose_run_dir(str(tmp_path / "older"), "tiny", changed)
    # A finished run is never read further nor touched: the next run goes beside it.
    (older / "state.json").write_text(json.dumps({"epochs_completed": 2, "finished": True}))
    (older / "config.json").write_text("{ damaged")
    assert choose_run_dir(str(tmp_path / "older"), "tiny", changed) == (
        str(tmp_path / "older" / "tiny-2"), False)
    # An empty folder (the user made it, or a run died before its marker) is taken.
    (tmp_path / "empty" / "tiny").mkdir(parents=True)
    assert choose_run_dir(str(tmp_path / "empty"), "tiny", effective) == (
        str(tmp_path / "empty" / "tiny"), False)


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                         (0o027, 0o640, 0o750),
                                                         (0o077, 0o600, 0o700)])
def test_run_files_and_temporary_folders_get_the_umasks_mode(tmp_path, umask, file_mode,
                                                              dir_mode):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_json(str(tmp_path / "state.json"), {"epochs_completed": 1})
        atomic_write_text(str(tmp_path / "history.csv"), "epoch\n1\n")
        folder = make_temp_dir(str(tmp_path))
        create_run_dir(str(tmp_path / "run"))
    finally:
        os.umask(old)
    for name in ("state.json", "history.csv", os.path.join("run", RUN_MARKER)):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == file_mode, name
    for path in (folder, tmp_path / "run"):
        assert stat.S_IMODE(os.stat(path).st_mode) == dir_mode, path
    assert os.path.basename(folder).startswith(".tmp-") and os.listdir(folder) == []
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-") and n !=
                os.path.basename(folder)]  # no temporary file left by the atomic writes


def test_json_files_stay_valid_json_when_a_metric_is_nan(tmp_path):
    path = tmp_path / "metrics.json"
    nan, inf = float("nan"), float("inf")
    atomic_write_json(str(path), {"mean_iou": nan, "per_class_iou": [0.5, inf, -inf],
                                  "nested": {"accuracy": nan, "count": 3}})

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "mean_iou": None, "per_class_iou": [0.5, None, None],
        "nested": {"accuracy": None, "count": 3}}


def test_a_damaged_or_edited_state_is_refused_naming_the_file(tmp_path):
    (tmp_path / "state.json").write_text('{"epochs_completed": 1,')
    with pytest.raises(DamagedFileError, match=r"state.json is not valid JSON \(line 1, column 24"):
        read_state(str(tmp_path))
    for state, problem in (
            ({"epochs_completed": "2"}, "epochs_completed is '2', expected a whole number"),
            ({"checkpoint": "/etc/passwd"}, "checkpoint is '/etc/passwd', expected"),
            ({"checkpoint": "checkpoints/../../x.keras"}, "checkpoint is 'checkpoints/../../x"),
            ({"history": {"epoch": 1}}, "history is not a list of epoch records")):
        (tmp_path / "state.json").write_text(json.dumps(state))
        with pytest.raises(RunFolderError, match=re.escape(problem)):
            read_state(str(tmp_path))
