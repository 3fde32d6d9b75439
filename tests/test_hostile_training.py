"""Bad input to ``python -m fcn_tf.train``, one table row per kind (issue 26).

Each row builds its input in a temporary folder and names what must come
out: exit status 2, a message holding ``expected`` (no traceback), and every
file the user had (the config, the data, anything under the output folder)
byte for byte as it was. A refused run leaves no new file either, except the
lock and marker of a real run folder it opened. No row trains: each one
fails before the first step.
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

import fcn_tf
from fcn_tf.config.run_config import load_config
from fcn_tf.runs.files import LOCK_FILE, RUN_MARKER
from fcn_tf.train import main
from train_fixtures import tiny_config, write_config

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0
as_root_skip = pytest.mark.skipif(ROOT_USER, reason="root may read and write anything")


@dataclasses.dataclass
class Case:
    kind: str
    make: object  # (tmp_path) -> argv
    expected: str
    marks: tuple = ()


def _config(tmp_path, **sections):
    config = tiny_config(tmp_path, **sections)
    config["train"]["epochs"] = 1
    return config


def _with(*overrides, **sections):
    """A row's input: the tiny config plus ``--set`` overrides."""
    def make(tmp_path):
        path = write_config(tmp_path, _config(tmp_path, **sections))
        return [str(path), "--quiet", *(arg for item in overrides for arg in ("--set", item))]
    return make


def _text(text, *argv):
    """A row's input: a config file holding ``text`` (str or bytes)."""
    def make(tmp_path):
        path = tmp_path / "config.json"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text(tmp_path) if callable(text) else text)
        return [str(path), *argv]
    return make


def _run_folder(state=None, checkpoint=None, config="effective", extra=None):
    """A row's input: an unfinished run folder ``runs/tiny`` as an older run left it."""
    def make(tmp_path):
        path = write_config(tmp_path, _config(tmp_path))
        folder = tmp_path / "runs" / "tiny"
        (folder / "checkpoints").mkdir(parents=True)
        document = load_config(path).to_dict() if config == "effective" else config
        (folder / "config.json").write_text(document if isinstance(document, str)
                                            else json.dumps(document))
        (folder / "preprocessing.json").write_text('{"mean": [0, 0, 0], "std": [1, 1, 1]}')
        if state is not None:
            (folder / "state.json").write_text(state if isinstance(state, str)
                                               else json.dumps(state))
        if checkpoint is not None:
            (folder / "checkpoints" / "epoch0001.keras").write_bytes(checkpoint(tmp_path))
        if extra:
            extra(tmp_path, folder)
        return [str(path), "--quiet"]
    return make


def _truncated_checkpoint(tmp_path):
    """The first 2000 bytes of a real checkpoint, as a full disk or a killed copy leaves it."""
    model = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    model.save(tmp_path / "whole.keras")
    data = (tmp_path / "whole.keras").read_bytes()
    os.remove(tmp_path / "whole.keras")
    return data[:2000]


def _user_folder(tmp_path):
    folder = tmp_path / "runs" / "mywork"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "history.csv").write_text("epoch,loss\n1,0.5\n")
    (folder / "metrics.json").write_text('{"mean_iou": 0.9}')
    (folder / "checkpoints" / "epoch0001.keras").write_bytes(b"my own model")
    (folder / "notes.txt").write_text("my notes")
    path = write_config(tmp_path, _config(tmp_path))
    return [str(path), "--quiet", "--set", f"output.dir={tmp_path / 'runs'}",
            "--set", "output.name=mywork"]


def _file_at_run_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny").write_text("my file")
    return _with()(tmp_path)


def _dangling_link(tmp_path):
    (tmp_path / "runs").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "runs" / "tiny")
    return _with()(tmp_path)


def _escaping_checkpoint(tmp_path, folder):
    (tmp_path / "victim.keras").write_bytes(b"a file outside the run folder")


def _dir_named(name):
    def extra(tmp_path, folder):
        (folder / name).mkdir()
    return extra


def _checkpoints_file(tmp_path, folder):
    (folder / "checkpoints").rmdir()
    (folder / "checkpoints").write_text("not a folder")


def _duplicate_key(tmp_path):
    return ('{\n "train": {\n  "epochs": 1,\n  "learning_rate": 0.005,\n'
            '  "learning_rate": 500.0\n }\n}\n')


def _duplicate_section(tmp_path):
    body = json.dumps(_config(tmp_path), indent=1)[:-2]
    return body + ',\n "output": {"dir": "elsewhere"}\n}\n'


def _deep(tmp_path):
    return '{"model": {"options": {"x": ' + "[" * 5000 + "]" * 5000 + "}}}"


def _locked(tmp_path):
    argv = _run_folder()(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import fcntl, os, sys, time
            f = open(sys.argv[1], "a+")
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(f"{os.getpid()} otherhost\\n"); f.flush()
            print("held", flush=True)
            time.sleep(60)
        """), str(tmp_path / "runs" / "tiny" / LOCK_FILE)],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    _HOLDERS.append(holder)
    return argv


def _output_dir_under_a_file(tmp_path):
    (tmp_path / "f").write_text("a file")
    return _with(f"output.dir={tmp_path / 'f' / 'runs'}")(tmp_path)


def _read_only_output(tmp_path):
    (tmp_path / "readonly").mkdir(mode=0o555)
    return _with(f"output.dir={tmp_path / 'readonly'}")(tmp_path)


def _unreadable_config(tmp_path):
    argv = _with()(tmp_path)
    os.chmod(argv[0], 0)
    return argv


def _read_only_run_folder(tmp_path):
    argv = _run_folder(state={"epochs_completed": 0, "finished": False})(tmp_path)
    os.chmod(tmp_path / "runs" / "tiny", 0o555)
    return argv


def _null_section_then_set(tmp_path):
    config = _config(tmp_path)
    config["eval"] = None
    return [str(write_config(tmp_path, config)), "--set", "eval.scales=[]"]


_HOLDERS = []
GOOD_STATE = {"epochs_completed": 1, "checkpoint": "checkpoints/epoch0001.keras", "best": None,
              "best_epoch": None, "monitor": "val_mean_iou", "finished": False,
              "history": [{"epoch": 1, "loss": 1.0}]}

CASES = [
    # --- the sweep ---
    Case("user folder as output.name", _user_folder,
         "mywork exists but is not a run folder of fcn_tf (it holds checkpoints, history.csv, "
         "metrics.json, notes.txt and no fcn_tf-run.json)"),
    Case("empty output.name", _with("output.name="),
         "output.name: expected one folder name (the run folder inside output.dir), received ''"),
    Case("key given twice", _text(_duplicate_key),
         "key 'train.learning_rate' appears twice (lines 4 and 5)"),
    Case("section given twice", _text(_duplicate_section), "key 'output' appears twice (lines"),
    Case("config is a list, with --set", _text("[1, 2]", "--set", "train.epochs=1"),
         "expected a JSON object {...} at top level, received a list"),
    Case("UTF-8 byte-order mark is read", _text(b'\xef\xbb\xbf{"train": {"epochs": 0}}'),
         "train.epochs: must be >= 1, received 0"),
    Case("non-UTF-8 bytes", _text(b'{\n"train": {"epochs": 1},\n"x": "\xff"}'),
         "config.json: not UTF-8 text (byte 0xff on line 3)"),
    Case("nested 5000 deep", _text(_deep), "nested more than 32 levels deep"),
    Case("eval.scales=[]", _with("eval.scales=[]"), "eval.scales: expected at least 1 value"),
    Case("eval.overlap=NaN", _with("eval.overlap=NaN", "eval.window=[16,16]"),
         "eval.overlap: expected a finite number, received nan"),
    Case("colour value 300", _with("data.colors=[[0,0,0],[300,0,0],[0,0,255]]"),
         "data.colors[1][0]: must be <= 255, received 300"),
    Case("learning_rate NaN", _with("train.learning_rate=NaN"),
         "train.learning_rate: expected a finite number, received nan"),
    Case("warmup_epochs Infinity", _with("train.warmup_epochs=Infinity"),
         "train.warmup_epochs: expected a finite number, received inf"),
    Case("augment value NaN", _with("data.augment.scale=[NaN,1.0]"),
         "data.augment.scale[0]: expected a finite number"),
    Case("truncated checkpoint", _run_folder(GOOD_STATE, checkpoint=_truncated_checkpoint),
         "epoch0001.keras (2000 bytes) is not a complete .keras file: it is truncated or "
         "damaged. Restore it, or pass --fresh"),
    Case("damaged state.json", _run_folder("{ broken"),
         "runs/tiny/state.json is not valid JSON (line 1, column 3"),
    Case("deleted checkpoint", _run_folder(GOOD_STATE),
         "epoch0001.keras is missing, but the run folder's state.json names it. Restore it, "
         "or pass --fresh"),
    Case("'checkpoints' is a file", _run_folder(extra=_checkpoints_file),
         "runs/tiny/checkpoints should be the run's checkpoints folder but is not a folder"),
    # --- kinds beyond the list ---
    Case("config path is a folder", lambda tmp_path: [str(tmp_path)],
         "is a folder, expected a config file"),
    Case("empty config file", _text(""), "config.json: the file is empty"),
    Case("binary config file", _text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
         "config.json: a binary file (it holds NUL bytes)"),
    Case("config is a JSON string, with --set", _text('"hello"', "--set", "train.epochs=2"),
         "at top level, received a string"),
    Case("config is a device", lambda tmp_path: [os.devnull], "is not a regular file"),
    Case("config over 16 MB", _text('{"x": "' + "a" * (17 * 2**20) + '"}'),
         "larger than 16 MB"),
    Case("epochs=1e400", _with("train.epochs=1e400"),
         "train.epochs: expected a finite number, received inf"),
    Case("negative seed", _with("train.seed=-1"), "train.seed: must be >= 0, received -1"),
    Case("seed beyond 64 bits", _with(f"data.seed={2**70}"),
         "data.seed: 1180591620717411303424 is too large for a 64-bit integer"),
    Case("learning rate that rounds to 0", _with("train.learning_rate=1e-400"),
         "train.learning_rate: must be > 0.0, received 0.0"),
    Case("output.name with a path separator", _with("output.name=../escape"),
         "received '../escape': it holds a path separator"),
    Case("output.name '..'", _with("output.name=.."), "received '..': it names no folder"),
    Case("output.name of 300 characters", _with("output.name=" + "a" * 300),
         "it is longer than 200 bytes"),
    Case("output.name with a NUL", _text(lambda tmp_path: json.dumps(
        dict(_config(tmp_path), output={"name": "a\u0000b"}))),
         "it holds a control character"),
    Case("run folder path is a file", _file_at_run_folder,
         "runs/tiny is a file, not a run folder; nothing was written"),
    Case("run folder path is a dangling link", _dangling_link, "runs/tiny is a broken link"),
    Case("empty path string", _with('model.weights=""'),
         "model.weights: expected a path, received an empty string. Use null for none"),
    Case("eval.split that does not exist", _with("eval.split=test"), "Split 'test'"),
    Case("validation split missing, checks off",
         _with("train.validation_split=nope", "train.check_dataset=false"), "Split 'nope'"),
    Case("state.json checkpoint outside the run folder",
         _run_folder(dict(GOOD_STATE, checkpoint="../../victim.keras"),
                     extra=_escaping_checkpoint),
         "checkpoint is '../../victim.keras', expected checkpoints/epochNNNN.keras inside the "
         "run folder"),
    Case("state.json is a list", _run_folder("[1]"),
         "state.json: expected a JSON object, received list"),
    Case("run folder's .lock is a folder", _run_folder(extra=_dir_named(LOCK_FILE)),
         "runs/tiny/.lock should be the run's .lock file but is not a file"),
    Case("run folder's config.json damaged", _run_folder(
        {"epochs_completed": 0, "finished": False}, config="{oops"),
         "runs/tiny/config.json is not valid JSON"),
    Case("export.tflite without export.enabled", _with("export.tflite=true"),
         "export.tflite: true, but export.enabled is false"),
    Case("colour of two values", _with("data.colors=[[0,0],[1,1],[2,2]]"),
         "data.colors[0]: expected a list of 3 values, received [0, 0]"),
    Case("run folder locked by a live process", _locked,
         "is in use by process"),
    Case("--set value nested 5000 deep", _with("model.options.x=" + "[" * 5000 + "]" * 5000),
         "the value nests lists or objects more than 32 levels deep"),
    Case("--set with an empty section name", _with(".epochs=3"),
         "--set '.epochs=3': expected section.key=value"),
    Case("--set without '='", _with("train.epochs"), "expected section.key=value"),
    Case("unknown key in a nested section", _with('data.splits={"train": {"imgs": "x"}}'),
         "Unknown key 'imgs' in 'data.splits.train'. Did you mean 'images'?"),
    Case("model option of the wrong type", _with('model.options.base_filters="8"'),
         "model.options: a value has the wrong type for model 'unet'"),
    Case("model option NaN", _with("model.options.base_filters=NaN"),
         "model.options.base_filters: expected a finite number"),
    Case("output.dir under a file", _output_dir_under_a_file, "is a file, so run folders cannot"),
    Case("crop size of a million", _with("data.crop_size=[1000000,1000000]"),
         "data.crop_size[0]: must be <= 16384"),
    Case("null section, then --set into it", _null_section_then_set,
         "eval.scales: expected at least 1 value"),
    Case("read-only output.dir", _read_only_output, "is not writable; choose another folder",
         marks=(as_root_skip,)),
    Case("unreadable config", _unreadable_config, "cannot be read (Permission denied)",
         marks=(as_root_skip,)),
    Case("run folder of another user", _read_only_run_folder,
         "is not writable by this user", marks=(as_root_skip,)),
]


def _snapshot(folder):
    """``{relative path: sha256}`` of every file under ``folder`` (links not followed)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path) and os.access(path, os.R_OK):
                with open(path, "rb") as f:
                    found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.fixture(autouse=True)
def _stop_lock_holders():
    yield
    while _HOLDERS:
        holder = _HOLDERS.pop()
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.kind, marks=c.marks) for c in CASES])
def test_bad_input_is_refused_before_training_and_leaves_the_users_files(case, tmp_path, capsys):
    argv = case.make(tmp_path)
    before = _snapshot(tmp_path)
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert case.expected in err, err
    assert "Traceback" not in err
    after = _snapshot(tmp_path)
    assert {p: after.get(p) for p in before} == before  # nothing of the user's changed
    new = {os.path.basename(p) for p in set(after) - set(before)}
    assert new <= {LOCK_FILE, RUN_MARKER}, new  # no checkpoint, state or log was written
