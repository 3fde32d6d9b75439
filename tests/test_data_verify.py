"""Every bad-input kind is reported with the offending file, by verify and check_dataset."""

import os

import numpy as np
import pytest

from data_fixtures import make_dataset, save_image
from fcn_tf.data import (
    DatasetError,
    check_dataset,
    format_report,
    load_data_config,
    median_frequency_weights,
    verify,
)
from fcn_tf.data.__main__ import main as data_main


def _camvid(tmp_path, **kwargs):
    path, written = make_dataset(tmp_path, "camvid", "ids", **kwargs)
    return path, os.path.join(tmp_path, "ds")


def _truncate(root):
    path = os.path.join(root, "train", "train_001.png")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    return path


def _garbage(root):
    path = os.path.join(root, "train", "train_002.png")
    open(path, "wb").write(b"not an image at all")
    return path


def _size_mismatch(root):
    path = os.path.join(root, "trainannot", "train_003.png")
    save_image(np.zeros((20, 32), np.uint8), path)
    return path


def _image_without_mask(root):
    path = os.path.join(root, "train", "orphan_image.png")
    save_image(np.zeros((24, 32, 3), np.uint8), path)
    return path


def _mask_without_image(root):
    path = os.path.join(root, "trainannot", "orphan_mask.png")
    save_image(np.zeros((24, 32), np.uint8), path)
    return path


def _bad_labels(root):
    path = os.path.join(root, "trainannot", "train_000.png")
    values = np.zeros((24, 32), np.uint8)
    values[0, 0], values[1, 1] = 7, 42
    save_image(values, path)
    return path


BAD_INPUTS = {
    "truncated": (_truncate, "unreadable", "truncated"),
    "unreadable": (_garbage, "unreadable", "cannot"),
    "size_mismatch": (_size_mismatch, "size_mismatch", "20x32"),
    "image_without_mask": (_image_without_mask, "image_without_mask", "without a mask"),
    "mask_without_image": (_mask_without_image, "mask_without_image", "without an image"),
    "bad_labels": (_bad_labels, "bad_labels", "[7, 42]"),
}


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_verify_names_the_file(tmp_path, kind):
    make_bad, expected_kind, detail = BAD_INPUTS[kind]
    path, root = _camvid(tmp_path)
    bad_file = make_bad(root)
    report = verify(load_data_config(path))
    assert not report.ok
    assert [p.kind for p in report.problems] == [expected_kind]
    problem = report.problems[0]
    assert problem.split == "train" and any(bad_file in f for f in problem.files)
    text = format_report(report)
    assert bad_file in text and detail in text


@pytest.mark.parametrize("kind", [k for k in BAD_INPUTS if k != "truncated"])
def test_check_dataset_fails_fast_naming_the_file(tmp_path, kind):
    make_bad, _, _ = BAD_INPUTS[kind]
    path, root = _camvid(tmp_path)
    bad_file = make_bad(root)
    with pytest.raises(DatasetError) as error:
        check_dataset(load_data_config(path), ["train", "val"])
    assert bad_file in str(error.value) and "verify" in str(error.value)


def test_empty_split_and_missing_folder(tmp_path):
    path, root = _camvid(tmp_path, counts={"train": 2, "val": 2})
    for name in os.listdir(os.path.join(root, "val")):
        os.remove(os.path.join(root, "val", name))
        os.remove(os.path.join(root, "valannot", name))
    config = load_data_config(path)
    report = verify(config)
    assert [(p.kind, p.split) for p in report.problems] == [("empty_split", "val")]
    with pytest.raises(DatasetError, match="'val' has no"):
        check_dataset(config, ["train", "val"])
    with pytest.raises(DatasetError, match=r"'test': image folder .*ds/test' does not exist"):
        check_dataset(config, ["test"])


def test_palette_mask_read_as_ids_is_reported(tmp_path):
    path, _ = make_dataset(tmp_path, "folders", "palette", counts={"train": 2})
    config = load_data_config(path)
    config.mask_encoding = "ids"
    report = verify(config, ["train"])
    assert report.problems[0].kind == "bad_labels"
    assert "mask_encoding" in report.problems[0].detail and "palette" in report.problems[0].detail


def test_unknown_rgb_colour_is_reported(tmp_path):
    path, _ = make_dataset(tmp_path, "folders", "rgb", counts={"train": 2})
    config = load_data_config(path)
    config.color_map = config.color_map[:-1]  # drop the white -> ignore row
    report = verify(config, ["train"])
    assert report.problems[0].kind == "bad_labels" and "(255, 255, 255)" in report.problems[0].detail


def test_clean_report_counts_and_frequencies(tmp_path):
    path, written = make_dataset(tmp_path, "camvid", "ids")
    report = verify(load_data_config(path))
    assert report.ok and "No problems found." in format_report(report)
    assert {s: r.count for s, r in report.splits.items()} == {"train": 6, "val": 3}
    labels = np.stack([ids for _, _, ids in written["train"]])
    expected = np.bincount(labels[labels != 255], minlength=3) / (labels != 255).sum()
    np.testing.assert_allclose(report.splits["train"].pixels.frequencies, expected)
    assert report.splits["train"].pixels.ignored == (labels == 255).sum()
    assert report.splits["train"].sizes == [(24, 32)] * 6
    assert check_dataset(load_data_config(path)) == {"train": 6, "val": 3}


def test_median_frequency_weights():
    # Class 0 in two images (100 + 100 px), class 1 in one (100 px of 100), class 2 absent.
    weights = median_frequency_weights([150, 50, 0], image_pixels=[200, 100, 0])
    freq = np.array([0.75, 0.5])
    np.testing.assert_allclose(weights, [np.median(freq) / 0.75, np.median(freq) / 0.5, 0.0])
    np.testing.assert_allclose(median_frequency_weights([1, 1, 2]), [1.0, 1.0, 0.5])


def test_verify_cli_exit_status(tmp_path, capsys):
    path, root = _camvid(tmp_path)
    assert data_main(["verify", path]) == 0
    assert "train" in capsys.readouterr().out
    bad = _mask_without_image(root)
    assert data_main(["verify", path]) == 1
    assert bad in capsys.readouterr().out
    assert data_main(["verfiy", path]) == 2
    assert "Did you mean 'verify'" in capsys.readouterr().err
