"""``train.distribute``: mirrored over 2 logical CPUs and a 2-process multi-worker run.

Logical CPU devices must be configured before TensorFlow initialises, so the
distributed runs happen in subprocesses.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from fcn_tf.train import main
from train_fixtures import tiny_config, write_config

TESTS = os.path.dirname(os.path.abspath(__file__))

TWO_CPUS = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from fcn_tf.train import main
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=TESTS, **extra)


def _history(run_dir):
    with open(os.path.join(run_dir, "state.json")) as f:
        return json.load(f)["history"]


def _config(tmp_path):
    # No BatchNorm: per-replica batch statistics would differ from single-device ones.
    return tiny_config(
        tmp_path,
        model={"name": "unet", "options": {"base_filters": 4, "depth": 2, "batch_norm": False}},
        train={"epochs": 2, "batch_size": 4, "optimizer": "sgd", "learning_rate": 0.05},
    )


@pytest.mark.parametrize("ema", [None, 0.8], ids=["plain", "ema"])
def test_mirrored_on_two_cpus_matches_single_device(tmp_path, ema):
    # With train.ema the averaged weights are swapped in per replica for validation.
    config = _config(tmp_path)
    config["train"]["ema"] = ema
    single = write_config(tmp_path, config, "single.json")
    assert main([str(single), "--quiet"]) == 0

    config["train"]["distribute"] = "mirrored"
    config["output"]["name"] = "mirrored"
    mirrored = write_config(tmp_path, config, "mirrored.json")
    result = subprocess.run(
        [sys.executable, "-c", TWO_CPUS, str(mirrored), "--quiet"],
        env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    a, b = _history(tmp_path / "runs" / "tiny"), _history(tmp_path / "runs" / "mirrored")
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose([r[key] for r in a], [r[key] for r in b], rtol=2e-3, atol=1e-4,
                                   err_msg=key)
    # IoU counts argmaxes: near-tied logits of an untrained model can flip a few
    # pixels under a different summation order, so it gets an absolute tolerance.
    for key in ("mean_iou", "val_mean_iou"):
        np.testing.assert_allclose([r[key] for r in a], [r[key] for r in b], atol=0.01, err_msg=key)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_process_multi_worker_completes_an_epoch(tmp_path):
    config = _config(tmp_path)
    config["train"].update(distribute="multi_worker", epochs=1)
    config["output"]["name"] = "multi"
    path = write_config(tmp_path, config, "multi.json")
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "fcn_tf.train", str(path), "--quiet"],
            env=_env(TF_CONFIG=json.dumps(tf_config)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out
    chief = _history(tmp_path / "runs" / "multi")
    assert [row["epoch"] for row in chief] == [1]
    assert np.isfinite(chief[0]["loss"])
    assert (tmp_path / "runs" / ".workers" / "worker-1" / "multi" / "state.json").exists()
