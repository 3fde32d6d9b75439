"""python -m fcn_tf.predict: class-id PNGs, overlays, probabilities, large images."""

import hashlib
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from fcn_tf import predict
from fcn_tf.exporting import export_checkpoint
from fcn_tf.inference import read_manifest
from test_inference import make_run_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    run_dir, config, model = make_run_folder(tmp)
    images = tmp / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"small.png": (30, 41), "wide.jpg": (64, 150)}.items():
        cv2.imwrite(str(images / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    export_checkpoint(str(run_dir), str(tmp / "export"))
    return tmp, run_dir, config, model, images


def _expected_classes(model, path):
    rgb = np.asarray(Image.open(path).convert("RGB"), np.float32)
    return np.asarray(model(((rgb - 10.0) / 200.0)[None], training=False))[0].argmax(-1)


def test_predict_writes_palette_png_overlay_and_probabilities(run, capsys):
    tmp, run_dir, config, model, images = run
    out = tmp / "out-keras"
    assert predict.main(["--model", str(run_dir), str(images), "--out", str(out),
                         "--probabilities"]) == 0
    assert "preprocessing.json" in capsys.readouterr().out
    for stem, ext in (("small", ".png"), ("wide", ".jpg")):
        png = Image.open(out / f"{stem}.png")
        assert png.mode == "P"
        assert png.getpalette()[:9] == [c for color in config.data.colors for c in color]
        classes = np.asarray(png)
        assert np.array_equal(classes, _expected_classes(model, images / f"{stem}{ext}"))
        probabilities = np.load(out / f"{stem}_probabilities.npy")
        assert probabilities.shape == classes.shape + (3,) and probabilities.dtype == np.float16
        assert np.allclose(probabilities.astype(np.float32).sum(-1), 1.0, atol=2e-3)
        rgb = np.asarray(Image.open(images / f"{stem}{ext}").convert("RGB"), np.float32)
        logits = np.asarray(model(((rgb - 10.0) / 200.0)[None]))[0]
        softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        assert np.abs(probabilities.astype(np.float32) - softmax).max() < 1e-3  # float16
        overlay = cv2.imread(str(out / f"{stem}_overlay.png"))
        assert overlay.shape[1] == classes.shape[1] and overlay.shape[0] > classes.shape[0]


def test_predict_with_the_saved_model_matches_the_checkpoint(run):
    tmp, run_dir, _, _, images = run
    out_keras, out_saved = tmp / "a", tmp / "b"
    args = [str(images / "wide.jpg"), "--flip", "--scales", "0.5", "1"]
    assert predict.main(["--model", str(run_dir), "--out", str(out_keras), *args]) == 0
    assert predict.main(["--model", str(tmp / "export"), "--out", str(out_saved), *args]) == 0
    assert np.array_equal(np.asarray(Image.open(out_keras / "wide.png")),
                          np.asarray(Image.open(out_saved / "wide.png")))


def test_large_images_go_through_sliding_windows(run, capsys):
    tmp, run_dir, _, model, images = run
    out = tmp / "windows"
    assert predict.main(["--model", str(run_dir), str(images / "wide.jpg"), "--out", str(out),
                         "--max-pixels", "1000", "--window-batch", "1"]) == 0
    assert "(150x64, windows 64x150, overlap 0.5)" in capsys.readouterr().out  # clipped
    assert predict.main(["--model", str(run_dir), str(images / "wide.jpg"), "--out", str(out),
                         "--window", "32", "48", "--overlap", "0.5"]) == 0
    assert "windows 32x48" in capsys.readouterr().out
    classes = np.asarray(Image.open(out / "wide.png"))
    assert classes.shape == (64, 150)
    agree = (classes == _expected_classes(model, images / "wide.jpg")).mean()
    assert agree > 0.8


def test_predict_errors_name_the_input(run, capsys):
    tmp, run_dir, _, _, _ = run
    assert predict.main(["--model", str(run_dir), str(tmp / "missing.png"),
                         "--out", str(tmp / "x")]) == 2
    assert "missing.png: no such file or folder" in capsys.readouterr().err
    empty = tmp / "empty"
    empty.mkdir()
    assert predict.main(["--model", str(run_dir), str(empty), "--out", str(tmp / "x")]) == 2
    assert "a folder without images" in capsys.readouterr().err


def test_grayscale_model_reads_rgb_images_as_luma(tmp_path):
    run_dir, _, model = make_run_folder(tmp_path, data={"image_channels": 1}, mean=[5.0],
                                        std=[100.0])
    rgb = np.random.default_rng(1).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    assert predict.main(["--model", str(run_dir), str(tmp_path / "x.png"),
                         "--out", str(tmp_path / "o")]) == 0
    luma = np.round(rgb.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]))[..., None]
    expected = np.asarray(model(((luma - 5.0) / 100.0)[None]))[0].argmax(-1)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "x.png")), expected)
    assert json.loads((run_dir / "preprocessing.json").read_text())["mean"] == [5.0]


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()
            if p.is_file()}


def test_a_second_run_replaces_its_own_files_and_nothing_else(run, tmp_path, capsys):
    _, run_dir, _, _, images = run
    out = tmp_path / "out"
    args = ["--model", str(run_dir), str(images / "small.png"), "--out", str(out)]
    assert predict.main(args) == 0
    manifest = read_manifest(out)  # the last line about a file wins
    assert set(manifest) == {"small.png", "small_overlay.png"}
    assert all(entry["size"] == (out / name).stat().st_size for name, entry in manifest.items())
    assert predict.main(args) == 0  # its own, unchanged files: replaced without --overwrite
    (out / "notes.txt").write_text("mine")
    (out / "small_overlay.png").write_bytes(b"edited by hand")
    before = _digests(out)
    assert predict.main(args) == 2
    assert "small_overlay.png (predict wrote it, but it changed since)" in capsys.readouterr().err
    assert _digests(out) == before
    assert predict.main(args + ["--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert cv2.imread(str(out / "small_overlay.png")) is not None


def test_overwrite_never_writes_over_an_input(run, tmp_path, capsys):
    _, run_dir, _, _, images = run
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "small.png").write_bytes((images / "small.png").read_bytes())
    before = _digests(folder)
    assert predict.main(["--model", str(run_dir), str(folder), "--out", str(folder),
                         "--overwrite"]) == 2
    assert "never writes over an input, even with --overwrite" in capsys.readouterr().err
    assert _digests(folder) == before


def test_the_pixel_limit_refuses_before_the_model_and_can_be_raised(run, tmp_path, capsys):
    _, run_dir, _, _, images = run
    args = ["--model", str(run_dir), str(images / "small.png"), "--out", str(tmp_path / "o")]
    assert predict.main(args + ["--max-image-pixels", "1000"]) == 2
    err = capsys.readouterr()
    assert "41x30 pixels (WxH: 1,230 pixels" in err.err and "over the limit of 1,000" in err.err
    assert "--max-image-pixels sets the limit" in err.err and "Model:" not in err.out
    assert predict.main(args + ["--max-image-pixels", "1230"]) == 0
    assert predict.main(args + ["--max-image-pixels", "1000", "--skip-invalid"]) == 1
    assert "over the limit of 1,000" in capsys.readouterr().err


def test_exif_orientation_is_applied(run, tmp_path):
    _, run_dir, _, model, _ = run
    upright = np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned, shown upright after ROTATE_90
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, -1))).save(
        tmp_path / "phone.png", exif=exif.tobytes())
    assert predict.main(["--model", str(run_dir), str(tmp_path / "phone.png"),
                         "--out", str(tmp_path / "o")]) == 0
    classes = np.asarray(Image.open(tmp_path / "o" / "phone.png"))
    expected = np.asarray(model(((upright.astype(np.float32) - 10.0) / 200.0)[None]))[0]
    assert np.array_equal(classes, expected.argmax(-1))
