"""The benchmark's timing rules, its output file, and one small end-to-end run."""

import json
import os
import subprocess
import sys

import pytest

from fcn_tf.bench import output_path, time_calls
from fcn_tf.bench.flops import flops_per_image


def test_time_calls_separates_the_first_call_and_times_at_least_steps():
    calls = []
    timing = time_calls(lambda: calls.append(1), steps=4, warmup=3)
    assert len(calls) == 3 + 4  # first + 2 more warm-up + 4 timed
    assert len(timing.times) == 4
    assert min(timing.times) <= timing.median <= max(timing.times)
    assert timing.to_dict()["timed_calls"] == 4


def test_time_calls_keeps_timing_until_min_seconds_within_the_cap():
    timing = time_calls(lambda: None, steps=2, warmup=1, min_seconds=10.0, max_steps=7)
    assert len(timing.times) == 7


def test_output_path_never_overwrites(tmp_path):
    path = tmp_path / "bench.json"
    assert output_path(str(path)) == str(path)
    path.write_text("{}")
    other = output_path(str(path))
    assert other != str(path) and other.endswith(".json") and not os.path.exists(other)


# U-Net by default (its SavedModel exports in a few seconds); DeepLabV3+'s
# exports take about 13 s each, so its end-to-end run is a slow test.
END_TO_END = [
    pytest.param("unet", ("unet", None), id="unet"),
    pytest.param("deeplabv3plus_mobilenet_v2", ("deeplabv3plus", "mobilenet_v2"),
                 id="deeplabv3plus_mobilenet_v2", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("key, registered", END_TO_END)
def test_small_run_writes_every_section(tmp_path, key, registered):
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "fcn_tf.bench", "--models", key,
               "--sizes", "32", "--batches", "1", "--train-sizes", "32", "--train-batches", "2",
               "--precisions", "float32", "--jit", "off", "--train-jit", "off",
               "--steps", "2", "--warmup", "1", "--min-seconds", "0", "--matmul-sizes", "128",
               "--serving-model", key, "--serving-sizes", "48", "40",
               "--no-pipeline", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["matmul"]["float32"]["gflops"] > 0
    assert report["machine"]["matmul"]["bfloat16"]["gflops"] > 0
    (model,) = report["models"]
    name, backbone = registered
    assert model["flops_per_image"]["32"] == flops_per_image(name, 21, 32, 32, backbone)
    kinds = sorted((e["kind"], e["size"], e["batch"]) for e in model["results"])
    assert kinds == [("keras", 32, 1), ("savedmodel", 32, 1), ("train", 32, 2)]
    for entry in model["results"]:
        assert entry["images_per_s"] > 0 and entry["timed_calls"] >= 2
        assert entry["min_s"] <= entry["median_s"] <= entry["max_s"]
    train = next(e for e in model["results"] if e["kind"] == "train")
    assert abs(train["gflops"] - 3 * model["flops_per_image"]["32"] * train["images_per_s"] / 1e9) < 1e-6
    assert model["peak_memory_mib"]["training float32"] > 100
    serving = report["serving"]
    assert [r["size"] for r in serving["by_jit"]["on"]] == [[48, 40]]
    assert [r["size"] for r in serving["by_jit"]["off"]] == [[48, 40]]
    assert len(serving["break_even_calls"]) == 1
    assert "images/s" in result.stdout and f"Serving {key}" in result.stdout


def test_agreement_of_a_trained_run_counts_every_validation_pixel(tmp_path):
    from fcn_tf.bench.measurements import bench_agreement
    from fcn_tf.config.run_config import load_config
    from fcn_tf.training.trainer import train
    from train_fixtures import tiny_config, write_config

    config = load_config(str(write_config(tmp_path, tiny_config(tmp_path, train={"epochs": 1}))))
    run = train(config, verbose=0).run_dir
    result = bench_agreement(str(run), args=None)
    assert result["split"] == "val"
    assert result["pixels"] == 4 * 32 * 32  # the four 32x32 validation images, full resolution
    assert 0 <= result["changed_pixels"] <= result["pixels"]
    assert result["changed_fraction"] == result["changed_pixels"] / result["pixels"]
    # bfloat16 keeps about 3 significant digits of small logits.
    assert 0 < result["max_abs_logit_difference"] < 0.1


def test_runtimes_times_every_deployed_form_of_a_model(monkeypatch):
    import argparse

    import fcn_tf
    from fcn_tf.bench import runtimes

    monkeypatch.setattr(runtimes, "build", lambda key, precision: fcn_tf.build_model(
        "unet", 3, base_filters=4, depth=2))
    result = runtimes.bench_runtimes("unet", argparse.Namespace(runtime_size=32, rounds=2,
                                                                steps=1))
    forms = sorted((r["runtime"], r["precision"], r["folded"]) for r in result["rows"])
    expected = [("keras", "float32", False)]
    for folded in (False, True):
        expected += [("saved_model", p, folded) for p in runtimes.SAVED_MODEL]
        expected += [("litert", p, folded) for p in runtimes.LITERT]
        expected += [("onnx", p, folded) for p in runtimes.ONNX]
    assert forms == sorted(expected)
    for row in result["rows"]:
        assert row["size"] == 32 and row["slowest"] <= row["images_per_s"] <= row["fastest"]
    text = runtimes.format_runtimes([result])
    assert "Runtimes of unet" in text and "onnx" in text and "BN folded" in text
