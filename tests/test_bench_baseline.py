"""``python -m fcn_tf.bench --baseline torch``: rows, the ratio table, and the PyTorch twins.

The PyTorch networks are checked only where PyTorch is installed (the optional
``bench`` extra; the default test environment does not have it): same
trainable parameter count and same output shape as the Keras model.
"""

import importlib.util

import numpy as np
import pytest

from fcn_tf.bench import cli
from fcn_tf.bench.baseline import ROWS, Row, format_comparison, selected_rows, summarise


def _args(*argv):
    return cli.parse_args(["--baseline", "torch", *argv])


def test_rows_cover_the_three_networks_for_inference_and_training():
    assert {(row.model, row.kind) for row in ROWS} == {
        (model, kind) for model in ("fcn8s", "unet", "deeplabv3plus_mobilenet_v2")
        for kind in ("inference", "train")}


def test_models_and_baseline_size_select_rows():
    rows = selected_rows(_args("--models", "unet", "--baseline-size", "48"))
    assert rows == [Row("unet", "inference", 48, 1), Row("unet", "train", 48, 2)]


def test_summary_takes_the_median_of_rounds_and_keeps_each_rounds_ratio():
    row = Row("unet", "train", 32, 2)

    def measured(fcn_tf, torch):
        return {("fcn_tf", "float32"): {"rows": {row.key: {"images_per_s": fcn_tf}}},
                ("torch", "float32"): {"rows": {row.key: {"images_per_s": torch}}}}

    rounds = [measured(3.0, 2.0), measured(1.0, 4.0), measured(2.0, 1.0)]
    (entry,) = summarise(rounds, [row], ["float32"])
    assert entry["fcn_tf_images_per_s"] == 2.0 and entry["torch_images_per_s"] == 2.0
    assert entry["ratio"] == 1.0
    assert entry["round_ratios"] == [1.5, 0.25, 2.0]
    text = format_comparison([entry], 3)
    assert "1.00x" in text and "1.50, 0.25, 2.00" in text


def test_a_row_missing_from_a_framework_is_reported_not_divided():
    row = Row("unet", "train", 32, 2)
    rounds = [{("fcn_tf", "float32"): {"rows": {row.key: {"images_per_s": 1.0}}},
               ("torch", "float32"): {"error": "exit status 1"}}]
    (entry,) = summarise(rounds, [row], ["float32"])
    assert entry["error"] == "not measured"
    assert "not measured" in format_comparison([entry], 1)


def test_without_torch_the_command_names_the_extra(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    code = cli.main(["--baseline", "torch", "--out", str(tmp_path / "b.json")])
    assert code == 2
    assert 'pip install -e ".[bench]"' in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_models_without_a_baseline_fail_with_the_ones_that_have_one(monkeypatch, capsys):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    code = cli.main(["--baseline", "torch", "--models", "fcn_deconv"])
    assert code == 2
    assert "deeplabv3plus_mobilenet_v2, fcn8s, unet" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["fcn8s", "unet", "deeplabv3plus_mobilenet_v2"])
def test_torch_twin_has_the_same_parameters_and_output_shape(key):
    torch = pytest.importorskip("torch", reason="PyTorch is the optional bench extra")
    from fcn_tf.bench.measurements import build
    from fcn_tf.bench.torch_models import build_torch_model, trainable_parameters

    keras_model = build(key, "float32")
    torch_model = build_torch_model(key).eval()
    keras_count = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    assert trainable_parameters(torch_model) == keras_count
    x = np.random.default_rng(0).random((1, 64, 80, 3), np.float32)
    with torch.no_grad():
        out = torch_model(torch.from_numpy(x).permute(0, 3, 1, 2))
    assert tuple(out.permute(0, 2, 3, 1).shape) == tuple(keras_model(x).shape)
