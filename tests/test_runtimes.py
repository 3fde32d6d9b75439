"""LiteRT and ONNX files: quantised precisions, the fidelity check, and the deployed file scored.

One tiny trained run (2 epochs, 32x32 images) is exported with every LiteRT
and ONNX precision and checked on its val split through the CLI; the tests
read what that wrote and call evaluate and predict on the exported files.
Every architecture's float32 LiteRT / ONNX equality with Keras is in
tests/test_export.py.
"""

import hashlib
import importlib
import json
import os
import pathlib

import cv2
import numpy as np
import pytest
from PIL import Image

import fcn_tf
from fcn_tf import evaluate, export, predict
from fcn_tf.exporting import export_checkpoint
from fcn_tf.fidelity import FIDELITY_FILE, format_fidelity
from fcn_tf.inference import load_for_inference
from fcn_tf.runtimes import RuntimeMissingError, load_artifact
from fcn_tf.runtimes import onnx as onnx_runtime
from fcn_tf.train import main as train_main
from train_fixtures import tiny_config, write_config

LITERT = ["float32", "float16", "int8", "int8_full"]
ONNX = ["float32", "int8"]
FILES = ["model.tflite", "model_float16.tflite", "model_int8.tflite", "model_int8_full.tflite",
         "model.onnx", "model_int8.onnx"]


def _hashes(folder):
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in pathlib.Path(folder).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    config_path = write_config(root, tiny_config(root))
    assert train_main([str(config_path)]) == 0
    run = root / "runs" / "tiny"
    out = root / "models" / "tiny" / "1"
    code = export.main(["--checkpoint", str(run), "--out", str(out), "--tflite",
                        "--tflite-precision", *LITERT, "--onnx", "--onnx-precision", *ONNX,
                        "--check", "val", "--max-changed", "0.2"])
    fidelity = json.loads((out / FIDELITY_FILE).read_text())
    return {"root": root, "run": run, "out": out, "code": code, "fidelity": fidelity,
            "rows": {row["name"]: row for row in fidelity["rows"]}}


def test_every_precision_is_a_file_described_in_the_metadata(deployed):
    out = deployed["out"]
    metadata = json.loads((out / "metadata.json").read_text())
    assert sorted(metadata["artifacts"]) == sorted(FILES)
    for name in FILES:
        entry = metadata["artifacts"][name]
        assert (out / name).stat().st_size > 0
        assert entry["runtime"] == ("onnx" if name.endswith(".onnx") else "litert")
        assert entry["free_size"] is True
    assert metadata["artifacts"]["model_int8_full.tflite"]["precision"] == "int8_full"
    sizes = {name: (out / name).stat().st_size for name in FILES}
    assert sizes["model_float16.tflite"] < sizes["model.tflite"]
    assert sizes["model_int8.tflite"] < sizes["model_float16.tflite"]


def test_fidelity_rows_float32_files_equal_the_checkpoint(deployed):
    rows, run = deployed["rows"], deployed["run"]
    assert deployed["code"] == 0
    names = list(rows)
    assert names[0] == "keras" and rows["keras"]["precision"] == "float32"  # the reference
    # A checkpoint trained in another precision also gets a row in it.
    trained_rows = [name for name in names if name.startswith("keras ")]
    assert set(names) == {"keras", *trained_rows, "saved_model", *FILES}
    keras_row = rows["keras"]
    # The checker's Keras model (in its training precision) scores what the trainer's
    # final evaluation scored.
    trained = json.loads((run / "metrics.json").read_text())
    trained_row = rows[trained_rows[0]] if trained_rows else keras_row
    assert trained_row["mean_iou"] == pytest.approx(trained["mean_iou"], abs=1e-9)
    assert keras_row["pixels_changed"] == 0 and keras_row["images"] == 4
    for name in ("saved_model", "model.tflite", "model.onnx"):
        row = rows[name]
        # Float rounding only: a pixel whose two best classes tie may flip, no more.
        assert row["pixels_changed"] < 1e-3, row
        assert row["max_probability_difference"] <= 1e-4, row
        assert row["mean_iou"] == pytest.approx(keras_row["mean_iou"], abs=1e-3)
        assert row["images_per_second"] > 0 and not row["flagged"]


def test_fidelity_rows_quantised_files_are_close_and_measured(deployed):
    rows = deployed["rows"]
    for name in ("model_float16.tflite", "model_int8.tflite", "model_int8_full.tflite",
                 "model_int8.onnx"):
        row = rows[name]
        assert 0 < row["max_probability_difference"] < 0.2, row
        assert row["pixels_changed"] <= 0.05, row
        assert 0 <= row["mean_iou"] <= 1 and row["images_per_second"] > 0
    assert rows["model_float16.tflite"]["max_probability_difference"] < 1e-2


@pytest.mark.parametrize("name", ["model.onnx", "model_int8_full.tflite", "saved_model"])
def test_evaluate_scores_the_exported_file_as_the_checker_did(deployed, name, capsys):
    run, out = deployed["run"], deployed["out"]
    model = out if name == "saved_model" else out / name
    before = _hashes(run)
    assert evaluate.main([str(run / "config.json"), "--checkpoint", str(model), "--quiet"]) == 0
    assert _hashes(run) == before  # the run's own evaluation is not written over
    folder = out / f"eval-val-{name.replace('.', '_')}"
    scores = json.loads((folder / "metrics.json").read_text())
    assert scores["mean_iou"] == pytest.approx(deployed["rows"][name]["mean_iou"], abs=1e-9)
    assert scores["normalization"] == {"mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]}
    assert f"Wrote {folder}" in capsys.readouterr().out


def test_predict_with_an_onnx_file_writes_the_saved_models_classes(deployed):
    root, out = deployed["root"], deployed["out"]
    image = root / "data" / "val" / "000.png"
    assert predict.main(["--model", str(out / "model.onnx"), str(image),
                         "--out", str(root / "pred_onnx")]) == 0
    assert predict.main(["--model", str(out), str(image), "--out", str(root / "pred_sm")]) == 0
    onnx_mask = np.array(Image.open(root / "pred_onnx" / "000.png"))  # palette: class ids
    saved_mask = np.array(Image.open(root / "pred_sm" / "000.png"))
    assert onnx_mask.shape == (32, 32) and np.array_equal(onnx_mask, saved_mask)


def test_load_for_inference_reads_every_file_with_its_class_names(deployed):
    out = deployed["out"]
    pixels = cv2.cvtColor(cv2.imread(str(deployed["root"] / "data" / "val" / "001.png")),
                          cv2.COLOR_BGR2RGB)[None].astype(np.float32)
    reference = load_for_inference(str(deployed["run"]))
    expected = np.argmax(reference.logits(pixels), -1)
    for name in ("model.tflite", "model.onnx"):
        loaded = load_for_inference(str(out / name))
        assert loaded.kind == ("onnx" if name.endswith(".onnx") else "litert")
        assert loaded.info["class_names"] == reference.info["class_names"]
        assert np.array_equal(np.argmax(loaded.logits(pixels), -1), expected)


def test_a_flagged_file_is_named_and_the_check_exits_3(deployed, monkeypatch, capsys):
    rows = [dict(row) for row in deployed["fidelity"]["rows"]]
    rows[-1].update(pixels_changed=0.25, flagged=True)
    monkeypatch.setattr(export, "check_export", lambda *args, **kwargs: rows)
    code = export.main(["--checkpoint", str(deployed["run"]), "--out", str(deployed["out"]),
                        "--check", "val", "--check-only"])
    assert code == 3
    text = capsys.readouterr().out
    assert f"WARNING: {rows[-1]['name']} changes 25.00% of the pixels" in text
    assert "WARNING" in format_fidelity(rows) and "WARNING" not in format_fidelity(rows[:-1])


def test_check_options_are_checked(deployed, capsys):
    run, out = deployed["run"], deployed["out"]
    assert export.main(["--checkpoint", str(run), "--out", str(out), "--check-only"]) == 2
    assert "--check-only needs --check SPLIT" in capsys.readouterr().err
    assert export.main(["--checkpoint", str(run), "--out", str(out), "--check", "val",
                        "--check-only", "--max-changed", "2"]) == 2
    assert "--max-changed: expected a share in [0, 1], received 2.0" in capsys.readouterr().err


def test_full_int8_needs_a_run_folder(tmp_path):
    model = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    model.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="int8_full calibrates on the training images"):
        export_checkpoint(str(tmp_path / "m.keras"), str(tmp_path / "out"), tflite=True,
                          tflite_precision=["int8_full"])
    assert not (tmp_path / "out").exists()


def test_a_fixed_size_litert_file_refuses_other_sizes(tmp_path):
    model = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    model.save(tmp_path / "m.keras")
    export_checkpoint(str(tmp_path / "m.keras"), str(tmp_path / "out"), tflite=True,
                      tflite_size=(16, 24))
    runner = load_artifact(str(tmp_path / "out" / "model.tflite"))
    assert not runner.free_size and runner.input_size == (16, 24)
    images = np.zeros((2, 16, 24, 3), np.uint8)
    assert runner(images)["class_ids"].shape == (2, 16, 24)  # batches run one image a time
    with pytest.raises(ValueError, match="exported for 16x24 images only, received 20x20"):
        runner(np.zeros((1, 20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 \[batch, height, width, 3\] RGB"):
        runner(np.zeros((1, 16, 24, 3), np.float32))


def test_unreadable_and_unknown_files_are_refused_with_their_names(tmp_path):
    for name in ("bad.onnx", "bad.tflite"):
        (tmp_path / name).write_bytes(b"not a model at all")
        with pytest.raises(ValueError, match=f"model {tmp_path / name}: .* cannot read"):
            load_artifact(str(tmp_path / name))
    with pytest.raises(ValueError, match=r"expected a \.tflite or \.onnx file, received a \.pb"):
        load_artifact(str(tmp_path / "saved_model.pb"))
    with pytest.raises(FileNotFoundError, match="missing.onnx: no such file"):
        load_artifact(str(tmp_path / "missing.onnx"))


def test_a_file_without_its_metadata_is_refused(deployed, tmp_path):
    lonely = tmp_path / "model.onnx"
    lonely.write_bytes((deployed["out"] / "model.onnx").read_bytes())
    with pytest.raises(FileNotFoundError, match="no metadata.json in"):
        load_for_inference(str(lonely))


def test_a_missing_runtime_names_the_extra(deployed, monkeypatch, capsys):
    real = importlib.import_module

    def without_onnxruntime(name, *args):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_onnxruntime)
    with pytest.raises(RuntimeMissingError, match=r'pip install -e "\.\[deploy\]"'):
        load_artifact(str(deployed["out"] / "model.onnx"))
    assert evaluate.main([str(deployed["run"] / "config.json"), "--checkpoint",
                          str(deployed["out"] / "model.onnx"), "--quiet"]) == 2
    assert "needs the 'onnxruntime' package" in capsys.readouterr().err


def test_dilated_same_convolutions_get_explicit_pads():
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    weight = onnx.numpy_helper.from_array(np.zeros((4, 2, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], auto_pad="SAME_UPPER", dilations=[6, 6]),
        helper.make_node("Conv", ["a", "w"], ["b"], auto_pad="SAME_UPPER", dilations=[2, 2],
                         strides=[2, 2]),  # size-dependent: left alone
        helper.make_node("Conv", ["b", "w"], ["c"], auto_pad="SAME_UPPER", dilations=[1, 1]),
        helper.make_node("Conv", ["c", "w"], ["d"], auto_pad="SAME_LOWER", dilations=[2, 1],
                         kernel_shape=[2, 3]),
    ]
    graph = helper.make_graph(nodes, "g", [], [], initializer=[weight])
    assert onnx_runtime.explicit_dilated_padding(graph) == 2
    attrs = [{a.name: helper.get_attribute_value(a) for a in node.attribute}
             for node in graph.node]
    assert attrs[0]["pads"] == [6, 6, 6, 6] and "auto_pad" not in attrs[0]
    assert attrs[1]["auto_pad"] == b"SAME_UPPER" and attrs[2]["auto_pad"] == b"SAME_UPPER"
    assert attrs[3]["pads"] == [1, 1, 1, 1]  # total 2 * (2 - 1) = 2 rows, 1 * 2 = 2 columns


def test_no_deprecated_tflite_interpreter_is_left():
    root = pathlib.Path(__file__).resolve().parents[1]
    needle = "tf.lite." + "Interpreter"
    found = [str(path.relative_to(root)) for folder in ("fcn_tf", "tests", "notebooks", "docs")
             for path in (root / folder).rglob("*")
             if path.suffix in (".py", ".md", ".ipynb") and needle in path.read_text("utf-8")]
    found += ["README.md"] if needle in (root / "README.md").read_text("utf-8") else []
    assert found == []
