"""Export: save every architecture, reload it in a fresh process, compare with Keras.

In the style of TF Model Garden's ``serving/semantic_segmentation_test.py``:
the module fixture exports every tiny model of ``tests/model_cases.py`` (plus
a grayscale and a one-logit binary U-Net), one model per family also as
LiteRT and ONNX files, computes the in-memory Keras outputs at two input
sizes, then runs ONE subprocess that reloads every SavedModel with
``tf.saved_model.load``, calls both signatures, runs every LiteRT file with
``ai-edge-litert`` and every ONNX file with onnxruntime at both sizes (free
height and width), probes the error paths and prints JSON.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tensorflow.core.protobuf import saved_model_pb2

import fcn_tf
from fcn_tf import export
from fcn_tf.exporting import export_checkpoint, remove_stale_temporaries
from fcn_tf.models.folding import fold_batch_norm
from fcn_tf.runs.files import METADATA_FILE
from fcn_tf.runtimes import litert, load_artifact
from fcn_tf.signatures import SIGNATURE_BYTES, SIGNATURE_IMAGES
from model_cases import CASES

SIZES = [(32, 48), (45, 37)]
TFLITE_SIZE = SIZES[0]  # where a test fixes the LiteRT input size
NUM_CLASSES = 3
EXTRA_CASES = [
    ("unet-gray", "unet", None, {"base_filters": 4, "depth": 3, "input_channels": 1}, 3),
    ("unet-binary", "unet", None, {"base_filters": 4, "depth": 3}, 1),
    ("fpn-standardized", "fpn", None, {"widths": (4, 8, 8, 8), "blocks": (1, 1, 1, 1),
                                       "decoder_filters": 8, "standardize_input": True}, 3),
]
ALL_CASES = [(f"{n}-{b}", n, b, o, NUM_CLASSES) for n, b, o in CASES] + EXTRA_CASES
IDS = [case[0] for case in ALL_CASES]
# LiteRT + ONNX conversion costs 5-25 s per model: one per model family in the
# default run, the others in test_litert_and_onnx_for_the_other_cases (slow).
ARTIFACT_CASES = ["unet-unet_encoder", "fcn8s-vgg16", "deeplabv3plus-mobilenet_v2",
                  "fpn-resnet_lite", "unet-gray", "unet-binary"]
ARTIFACT_FILES = ["model.tflite", "model.onnx"]

RELOAD_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    from fcn_tf.runtimes import load_artifact

    root = sys.argv[1]
    cases = json.load(open(os.path.join(root, "cases.json")))
    results = {}

    def error_of(call):
        try:
            call()
        except Exception as error:  # reported, never raised: the process must survive
            return {"type": type(error).__name__, "message": str(error)[-600:]}
        return None

    for case in cases:
        folder = os.path.join(root, case)
        data = np.load(os.path.join(folder, "reference.npz"))
        loaded = tf.saved_model.load(os.path.join(folder, "export"))
        images_sig = loaded.signatures["serving_default"]
        bytes_sig = loaded.signatures["serving_bytes"]
        out = {"signatures": sorted(loaded.signatures.keys())}
        from tensorflow.python.tools import saved_model_utils  # what saved_model_cli shows
        meta = saved_model_utils.get_meta_graph_def(os.path.join(folder, "export"), "serve")
        out["cli_signatures"] = {k: {"inputs": {n: [tf.dtypes.as_dtype(t.dtype).name,
                                                   [d.size for d in t.tensor_shape.dim]]
                                               for n, t in v.inputs.items()},
                                     "outputs": sorted(v.outputs)}
                                 for k, v in meta.signature_def.items() if k.startswith("serving")}
        for i in range(2):
            images = data[f"images{i}"]
            got = images_sig(images=tf.constant(images))
            encoded = [tf.io.encode_png(image).numpy() for image in images]
            got_bytes = bytes_sig(image_bytes=tf.constant(encoded))
            decided = data[f"margin{i}"] > 1e-6
            out[f"size{i}"] = {
                "probabilities_max_abs": float(np.abs(got["probabilities"].numpy()
                                                      - data[f"probabilities{i}"]).max()),
                # Where the top two probabilities tie to float rounding (BatchNorm is
                # folded in the export, so sums run in another order) either id is right.
                "class_ids_equal": bool(np.array_equal(got["class_ids"].numpy()[decided],
                                                       data[f"class_ids{i}"][decided])),
                "decided_share": float(decided.mean()),
                "class_ids_dtype": got["class_ids"].dtype.name,
                "shapes": [list(got["class_ids"].shape), list(got["probabilities"].shape)],
                "bytes_probabilities_max_abs": float(np.abs(
                    got_bytes["probabilities"].numpy() - data[f"probabilities{i}"]).max()),
                "bytes_class_ids_equal": bool(np.array_equal(
                    got_bytes["class_ids"].numpy()[decided], data[f"class_ids{i}"][decided])),
            }
        results[case] = out
        for name in sorted(os.listdir(os.path.join(folder, "export"))):
            if not name.endswith((".tflite", ".onnx")):
                continue
            runner = load_artifact(os.path.join(folder, "export", name))
            entry = {"free_size": runner.free_size}
            for i in range(2):
                got = runner(data[f"images{i}"])
                margin = data[f"margin{i}"]
                entry[f"size{i}"] = {
                    "probabilities_max_abs": float(np.abs(got["probabilities"]
                                                          - data[f"probabilities{i}"]).max()),
                    "class_ids_dtype": got["class_ids"].dtype.name,
                    "class_ids_equal_where_margin_gt_1e-4": bool(np.array_equal(
                        got["class_ids"][margin > 1e-4], data[f"class_ids{i}"][margin > 1e-4])),
                }
            out[name] = entry
        if case == cases[0]:
            png = tf.io.encode_png(data["images0"][0]).numpy()
            other = tf.io.encode_png(data["images1"][0]).numpy()
            out["errors"] = {
                "float_images": error_of(lambda: images_sig(images=tf.zeros([1, 8, 8, 3]))),
                "rank3_images": error_of(lambda: images_sig(images=tf.zeros([8, 8, 3], tf.uint8))),
                "four_channels": error_of(
                    lambda: images_sig(images=tf.zeros([1, 8, 8, 4], tf.uint8))),
                "garbage_bytes": error_of(
                    lambda: bytes_sig(image_bytes=tf.constant([png, b"not an image"]))),
                "mixed_sizes": error_of(lambda: bytes_sig(image_bytes=tf.constant([png, other]))),
                "empty_batch": error_of(
                    lambda: bytes_sig(image_bytes=tf.constant([], tf.string))),
                "empty_images": error_of(
                    lambda: images_sig(images=tf.zeros([0, 8, 8, 3], tf.uint8))),
                "zero_height": error_of(
                    lambda: images_sig(images=tf.zeros([1, 0, 8, 3], tf.uint8))),
                "scalar_bytes": error_of(lambda: bytes_sig(image_bytes=tf.constant(png))),
            }
            # Still alive and working after every error:
            out["after_errors_ok"] = bool(np.array_equal(
                images_sig(images=tf.constant(data["images0"]))["class_ids"].numpy(),
                data["class_ids0"]))
    print("RESULTS" + json.dumps(results))
""")


def _randomise_zero_kernels(model, seed):
    """FCN score layers start at zero (constant logits); give them values to compare."""
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        value = weight.numpy()
        if value.ndim > 1 and not value.any():
            weight.assign(rng.normal(0.0, 0.05, value.shape).astype(value.dtype))


def _reference(model, images, mean, std, channels):
    from fcn_tf.outputs import logits_to_classes, logits_to_probabilities
    from fcn_tf.preprocessing import rgb_to_luma

    pixels = images.astype(np.float32)
    if channels == 1:  # the package's one luma (ties rounded as the graph rounds them)
        pixels = np.asarray(rgb_to_luma(images), np.float32)
    logits = np.asarray(model((pixels - mean) / std, training=False))
    return logits_to_probabilities(logits), logits_to_classes(logits)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    info = {}
    for index, (case, name, backbone, options, classes) in enumerate(ALL_CASES):
        folder = root / case
        folder.mkdir()
        model = fcn_tf.build_model(name, classes, backbone, **options)
        _randomise_zero_kernels(model, index)
        checkpoint = folder / "model.keras"
        model.save(checkpoint)
        result = export_checkpoint(str(checkpoint), str(folder / "export"),
                                   tflite=case in ARTIFACT_CASES, onnx=case in ARTIFACT_CASES)
        with open(folder / "export" / METADATA_FILE) as f:
            metadata = json.load(f)
        mean = np.float32(metadata["normalization"]["mean"])
        std = np.float32(metadata["normalization"]["std"])
        channels = int(model.input_shape[-1])
        arrays = {}
        for i, (h, w) in enumerate(SIZES):
            images = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
            arrays[f"images{i}"] = images
            arrays[f"probabilities{i}"], arrays[f"class_ids{i}"] = _reference(
                model, images, mean, std, channels)
            top2 = np.sort(arrays[f"probabilities{i}"], -1)[..., -2:]
            arrays[f"margin{i}"] = top2[..., 1] - top2[..., 0]
        np.savez(folder / "reference.npz", **arrays)
        info[case] = {"result": result, "metadata": metadata}
    (root / "cases.json").write_text(json.dumps(IDS))
    script = root / "reload.py"
    script.write_text(RELOAD_SCRIPT)
    run = subprocess.run([sys.executable, str(script), str(root)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULTS")][-1]
    results = json.loads(line[len("RESULTS"):])
    report = {case: {"saved_model_bytes": info[case]["result"]["saved_model_bytes"],
                     "files": info[case]["result"]["files"],
                     **{k: results[case].get(k) for k in ["size0", "size1", *ARTIFACT_FILES]}}
              for case in IDS}
    (root / "report.json").write_text(json.dumps(report, indent=1))
    print("\nexport report:", root / "report.json")
    return root, info, results


@pytest.mark.parametrize("case", IDS)
def test_reloaded_signatures_match_the_keras_model_at_two_sizes(exported, case):
    _, _, results = exported
    out = results[case]
    for i, (h, w) in enumerate(SIZES):
        size = out[f"size{i}"]
        assert size["shapes"][0] == [2, h, w]
        assert size["shapes"][1] == [2, h, w, NUM_CLASSES if case != "unet-binary" else 2]
        assert size["class_ids_dtype"] == "int32"
        assert size["probabilities_max_abs"] <= 1e-5, size
        # Tiny random models tie often (equal logits): most pixels still decide.
        assert size["class_ids_equal"] and size["decided_share"] > 0.5, size
        assert size["bytes_probabilities_max_abs"] <= 1e-5, size
        assert size["bytes_class_ids_equal"], size


@pytest.mark.parametrize("file", ARTIFACT_FILES)
@pytest.mark.parametrize("case", ARTIFACT_CASES)
def test_litert_and_onnx_files_match_the_keras_model_at_two_free_sizes(exported, case, file):
    _, _, results = exported
    got = results[case][file]
    assert got["free_size"]
    # Grayscale: LiteRT's float arithmetic may round a luma that falls on .5 the other
    # way, one grey level (1/255 of the input) on a few pixels.
    tolerance = 5e-4 if case == "unet-gray" else 1e-4
    for i in range(2):
        assert got[f"size{i}"]["probabilities_max_abs"] <= tolerance, got
        assert got[f"size{i}"]["class_ids_equal_where_margin_gt_1e-4"], got
        assert got[f"size{i}"]["class_ids_dtype"] == "int32"


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in IDS if c not in ARTIFACT_CASES])
def test_litert_and_onnx_for_the_other_cases(tmp_path, case):
    _, name, backbone, options, classes = ALL_CASES[IDS.index(case)]
    model = fcn_tf.build_model(name, classes, backbone, **options)
    _randomise_zero_kernels(model, 0)
    model.save(tmp_path / "m.keras")
    export_checkpoint(str(tmp_path / "m.keras"), str(tmp_path / "out"), tflite=True, onnx=True)
    metadata = json.loads((tmp_path / "out" / METADATA_FILE).read_text())
    images = np.random.default_rng(1).integers(0, 256, (1, 45, 37, 3), dtype=np.uint8)
    expected, _ = _reference(model, images, np.float32(metadata["normalization"]["mean"]),
                             np.float32(metadata["normalization"]["std"]),
                             int(model.input_shape[-1]))
    for file in ARTIFACT_FILES:
        got = load_artifact(str(tmp_path / "out" / file))(images)
        assert np.abs(got["probabilities"] - expected).max() <= 1e-4, file


def test_saved_model_lists_both_serving_signatures(exported):
    _, _, results = exported
    shown = results[IDS[0]]["cli_signatures"]
    assert shown[SIGNATURE_IMAGES]["inputs"] == {"images": ["uint8", [-1, -1, -1, 3]]}
    assert shown[SIGNATURE_BYTES]["inputs"] == {"image_bytes": ["string", [-1]]}
    for name in (SIGNATURE_IMAGES, SIGNATURE_BYTES):
        assert shown[name]["outputs"] == ["class_ids", "probabilities"]


def test_signatures_reject_bad_inputs_with_clear_errors_and_the_process_survives(exported):
    _, _, results = exported
    errors = results[IDS[0]]["errors"]
    assert errors["float_images"]["type"] == "InvalidArgumentError"
    assert "expected to be a uint8 tensor but is a float" in errors["float_images"]["message"]
    for key, shape in (("rank3_images", "[8,8,3]"), ("four_channels", "[1,8,8,4]")):
        assert errors[key]["type"] == "InvalidArgumentError"
        assert f"Shape of tensor images {shape} is not compatible with expected shape " \
               "[?,?,?,3]" in errors[key]["message"]
        assert "images_must_be_batch_height_width_3_uint8_rgb" in errors[key]["message"]
    assert errors["garbage_bytes"]["type"] == "InvalidArgumentError"
    assert "Unknown image file format" in errors["garbage_bytes"]["message"]
    assert errors["mixed_sizes"]["type"] == "InvalidArgumentError"
    assert "must have the same height and width" in errors["mixed_sizes"]["message"]
    assert "empty batch" in errors["empty_batch"]["message"]
    for key in ("empty_images", "zero_height"):
        assert "batch, height and width >= 1" in errors[key]["message"], errors[key]
    assert "image_bytes_must_be_a_list_of_encoded_images_not_one_string" in \
        errors["scalar_bytes"]["message"]
    assert results[IDS[0]]["after_errors_ok"]


def test_metadata_describes_classes_channels_and_normalisation(exported):
    _, info, _ = exported
    gray = info["unet-gray"]["metadata"]
    assert gray["image_channels"] == 1 and "luma" in gray["grayscale_input"]
    assert gray["normalization"] == {"mean": [0.0], "std": [255.0]}
    fcn = info["fcn8s-vgg16"]["metadata"]
    assert fcn["model_name"] == "fcn8s_vgg16" and fcn["backbone"] == "vgg16"
    assert fcn["normalization"]["mean"] == pytest.approx([123.68, 116.779, 103.939])
    assert len(fcn["class_names"]) == len(fcn["colors"]) == NUM_CLASSES
    binary = info["unet-binary"]["metadata"]
    assert binary["num_classes"] == 2 and binary["logit_channels"] == 1
    assert info["fcn32s-vgg16"]["metadata"]["artifacts"] == {}
    lite, onnx = fcn["artifacts"]["model.tflite"], fcn["artifacts"]["model.onnx"]
    assert (lite["runtime"], lite["precision"], lite["free_size"]) == ("litert", "float32", True)
    assert lite["input"] == "images uint8 [1, height, width, 3] RGB"
    assert onnx["input"] == "images uint8 [batch, height, width, 3] RGB"
    assert onnx["outputs"]["probabilities"] == f"float32 [batch, height, width, {NUM_CLASSES}]"
    assert binary["artifacts"]["model.onnx"]["outputs"]["probabilities"].endswith(", 2]")


def _graph_constant_bytes(graph_file):
    """Bytes of numeric constants in a saved_model.pb (weights frozen into the graph)."""
    saved = saved_model_pb2.SavedModel()
    with open(graph_file, "rb") as f:
        saved.ParseFromString(f.read())
    total = 0
    for graph in saved.meta_graphs:
        nodes = list(graph.graph_def.node)
        nodes += [n for fn in graph.graph_def.library.function for n in fn.node_def]
        total += sum(len(n.attr["value"].tensor.tensor_content) for n in nodes if n.op == "Const")
    return total


def test_saved_model_stores_the_weights_once(exported):
    _, info, _ = exported
    for case, name, backbone, options, classes in ALL_CASES:
        # The export folds BatchNorm into the convolutions: those are the weights stored.
        model = fold_batch_norm(fcn_tf.build_model(name, classes, backbone, **options))
        weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
        graph_file = os.path.join(info[case]["result"]["export_dir"], "saved_model.pb")
        # Everything but the graph (variables, metadata, assets) holds the weights once...
        size = info[case]["result"]["saved_model_bytes"] - os.path.getsize(graph_file)
        assert weight_bytes < size < 1.5 * weight_bytes + 100_000, (case, size, weight_bytes)
        # ...and the graph (its size grows with the layer count) holds no copy of them.
        assert _graph_constant_bytes(graph_file) < 0.25 * weight_bytes, case


def test_export_from_a_run_folder_uses_its_config_and_preprocessing(tmp_path):
    from test_inference import make_run_folder

    run_dir, config, _ = make_run_folder(tmp_path)
    out = tmp_path / "exported"
    export_checkpoint(str(run_dir / "best.keras"), str(out), overwrite=True,
                 metadata_from_run=str(run_dir))
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["normalization"] == {"mean": [10.0] * 3, "std": [200.0] * 3}
    assert metadata["class_names"] == config.data.class_names
    assert metadata["training_config"]["model"]["name"] == "unet"
    assert metadata["model_name"] == "unet" and metadata["artifacts"] == {}
    assert "preprocessing.json" in metadata["normalization_source"]


def test_export_refuses_an_existing_folder_and_a_failure_leaves_nothing(tmp_path, monkeypatch,
                                                                      capsys):
    model = fcn_tf.build_model("unet", 2, base_filters=4, depth=2)
    checkpoint = tmp_path / "m.keras"
    model.save(checkpoint)
    out = tmp_path / "models" / "seg" / "1"
    out.mkdir(parents=True)
    (out / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match="out .* already exists. Pass overwrite=True"):
        export_checkpoint(str(checkpoint), str(out))
    assert export.main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 2
    assert "already exists. Pass --overwrite" in capsys.readouterr().err

    def broken(*args, **kwargs):
        raise RuntimeError("converter crashed")

    # A folder that is not an export is never replaced, even with --overwrite.
    with pytest.raises(FileExistsError, match="not a SavedModel export"):
        export_checkpoint(str(checkpoint), str(out), overwrite=True)
    assert os.listdir(out) == ["keep.txt"]
    (out / "keep.txt").unlink()
    out.rmdir()
    assert export.main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    monkeypatch.setattr(litert, "convert", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_checkpoint(str(checkpoint), str(out), overwrite=True, tflite=True)
    assert os.listdir(out.parent) == ["1"] and "model.tflite" not in os.listdir(out)  # untouched
    fresh = tmp_path / "models" / "seg" / "2"
    with pytest.raises(RuntimeError):
        export_checkpoint(str(checkpoint), str(fresh), tflite=True)
    assert not fresh.exists() and sorted(os.listdir(out.parent)) == ["1"]
    monkeypatch.undo()
    assert export.main(["--checkpoint", str(checkpoint), "--out", str(out), "--overwrite",
                        "--tflite", "--tflite-size", "16", "16"]) == 0
    assert "saved_model.pb" in os.listdir(out) and "model.tflite" in os.listdir(out)
    assert sorted(os.listdir(out.parent)) == ["1"]


def test_overwrite_never_replaces_the_run_folder_or_a_folder_holding_the_source(tmp_path, capsys):
    from test_inference import make_run_folder

    run_dir, _, _ = make_run_folder(tmp_path)
    before = sorted(os.listdir(run_dir))
    assert export.main(["--checkpoint", str(run_dir), "--out", str(run_dir), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "holds the model being exported" in err
    assert sorted(os.listdir(run_dir)) == before
    # An export folder that holds the checkpoint itself is refused as well.
    out = tmp_path / "exp"
    assert export.main(["--checkpoint", str(run_dir), "--out", str(out)]) == 0
    os.replace(run_dir / "best.keras", out / "best.keras")
    assert export.main(["--checkpoint", str(out / "best.keras"), "--out", str(out),
                        "--overwrite"]) == 2
    assert (out / "best.keras").exists()


def test_stale_temporary_folders_of_a_killed_export_are_removed(tmp_path):
    model = fcn_tf.build_model("unet", 2, base_filters=4, depth=2)
    model.save(tmp_path / "m.keras")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".tmp-out-{dead}-abc"
    live = tmp_path / f".tmp-out-{os.getpid()}-xyz"
    other = tmp_path / f".tmp-other-{dead}-abc"
    for folder in (stale, live, other):
        folder.mkdir()
    export_checkpoint(str(tmp_path / "m.keras"), str(tmp_path / "out"))
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temporaries(str(tmp_path / "other")) == [str(other)]


def test_the_export_folder_gets_the_umask_mode_not_mkdtemps_0700(tmp_path):
    from fcn_tf.utils.files import current_umask

    model = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    model.save(tmp_path / "m.keras")
    old = os.umask(0o022)
    try:
        export_checkpoint(str(tmp_path / "m.keras"), str(tmp_path / "models" / "seg" / "1"))
        assert current_umask() == 0o022
    finally:
        os.umask(old)
    assert (tmp_path / "models" / "seg" / "1").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "models" / "seg" / "1" / METADATA_FILE).stat().st_mode & 0o044 == 0o044
