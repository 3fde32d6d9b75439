"""``train.jit_compile: "auto"``: measured once per run, recorded, reused on resume."""

import json

import pytest

import fcn_tf.training.jit as jit
from fcn_tf.config.run_config import load_config
from fcn_tf.training.setup import build_loss_from_config, build_model_from_config, build_optimizer
from fcn_tf.training.trainer import train
from train_fixtures import tiny_config, write_config


def _config(tmp_path, **train):
    return load_config(str(write_config(tmp_path, tiny_config(tmp_path, train=train))))


def _choose(config, precision="float32"):
    model = build_model_from_config(config)
    return jit.choose_jit_compile(config, model, lambda: build_optimizer(config, 2),
                                  build_loss_from_config(config), precision)


@pytest.mark.parametrize("setting", [True, False])
def test_explicit_setting_is_kept_without_measuring(tmp_path, monkeypatch, setting):
    monkeypatch.setattr(jit, "measure_train_step", lambda *a, **k: pytest.fail("measured"))
    assert _choose(_config(tmp_path, jit_compile=setting)) == (
        setting, {"jit_compile": setting, "reason": "as configured"})


def test_auto_measures_both_and_keeps_xla_only_when_clearly_faster(tmp_path, monkeypatch):
    config = _config(tmp_path, jit_compile="auto")
    calls = []

    def fake(model, optimizer_fn, loss, shape, jit_compile, steps=3):
        calls.append((shape, jit_compile))
        return seconds[jit_compile]

    monkeypatch.setattr(jit, "measure_train_step", fake)
    seconds = {False: 1.0, True: 0.8}
    chosen, record = _choose(config)
    # The batch of the training shape: batch_size x crop x channels.
    assert calls == [((4, 32, 32, 3), False), ((4, 32, 32, 3), True)]
    assert chosen is True and record["step_seconds"] == {"off": 1.0, "on": 0.8}
    assert "1.25x" in record["reason"] and "XLA on" in record["reason"]
    seconds = {False: 1.0, True: 0.95}  # 5% faster is within noise: off
    chosen, record = _choose(config)
    assert chosen is False and "XLA off" in record["reason"]


def test_auto_really_times_train_steps_of_a_copy(tmp_path):
    config = _config(tmp_path, jit_compile="auto")
    model = build_model_from_config(config)
    before = [w.copy() for w in model.get_weights()]
    seconds = jit.measure_train_step(model, lambda: build_optimizer(config, 2),
                                     build_loss_from_config(config), (2, 32, 32, 3), False,
                                     steps=2)
    assert 0 < seconds < 60
    after = model.get_weights()
    assert all((a == b).all() for a, b in zip(before, after)), "the model itself was trained"


def test_auto_keeps_xla_off_for_bfloat16_on_a_cpu_without_measuring(tmp_path, monkeypatch):
    config = _config(tmp_path, jit_compile="auto")
    monkeypatch.setattr(jit, "_has_gpu", lambda: False)
    monkeypatch.setattr(jit, "measure_train_step", lambda *a, **k: pytest.fail("measured"))
    chosen, record = _choose(config, "mixed_bfloat16")
    assert chosen is False and "not measured for mixed_bfloat16 on a CPU" in record["reason"]
    assert "step_seconds" not in record
    # With a GPU (or in float32) the same setting is measured.
    monkeypatch.setattr(jit, "_has_gpu", lambda: True)
    monkeypatch.setattr(jit, "measure_train_step", lambda *a, **k: {False: 1.0, True: 0.5}[a[4]])
    assert _choose(config, "mixed_bfloat16")[0] is True
    monkeypatch.setattr(jit, "_has_gpu", lambda: False)
    assert _choose(config, "float32")[0] is True


def test_auto_is_off_under_distribution(tmp_path, monkeypatch):
    monkeypatch.setattr(jit, "measure_train_step", lambda *a, **k: pytest.fail("measured"))
    chosen, record = _choose(_config(tmp_path, jit_compile="auto", distribute="mirrored"))
    assert chosen is False and "train.distribute 'mirrored'" in record["reason"]


def test_a_run_records_the_choice_and_a_resumed_run_reuses_it(tmp_path, monkeypatch):
    calls = []

    def fake(model, optimizer_fn, loss, shape, jit_compile, steps=3):
        calls.append(jit_compile)
        return {False: 1.0, True: 2.0}[jit_compile]

    monkeypatch.setattr(jit, "measure_train_step", fake)
    config = _config(tmp_path, jit_compile="auto", epochs=1)
    result = train(config, verbose=0)
    state_path = f"{result.run_dir}/state.json"
    with open(state_path) as f:
        state = json.load(f)
    assert calls == [False, True]
    assert state["jit_compile"]["jit_compile"] is False
    assert state["jit_compile"]["step_seconds"] == {"off": 1.0, "on": 2.0}
    assert state["precision"] == "float32"
    # The same run, as if killed before it was marked finished: it resumes and
    # reuses the recorded choice instead of measuring again.
    state["finished"] = False
    with open(state_path, "w") as f:
        json.dump(state, f)
    again = train(config, verbose=0)
    assert again.resumed and again.run_dir == result.run_dir
    assert calls == [False, True]
