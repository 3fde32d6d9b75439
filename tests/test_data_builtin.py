"""The built-in shapes dataset: deterministic, complete, not separable by colour."""

import os

import numpy as np
import pytest

from fcn_tf.data import DataConfig, check_dataset, ensure_builtin_dataset, split_files
from fcn_tf.data.builtin import CLASS_NAMES, SPLIT_SIZES, render_example


@pytest.fixture(scope="module")
def builtin_root(tmp_path_factory):
    return ensure_builtin_dataset(tmp_path_factory.mktemp("builtin") / "shapes")


def test_generated_once_with_every_split(builtin_root):
    config = DataConfig(root=str(builtin_root))
    assert check_dataset(config, list(SPLIT_SIZES)) == SPLIT_SIZES
    mtime = os.path.getmtime(split_files(config, "train")[0][0])
    assert ensure_builtin_dataset(builtin_root) == str(builtin_root)  # no regeneration
    assert os.path.getmtime(split_files(config, "train")[0][0]) == mtime


def test_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("data")
    with pytest.raises(FileExistsError, match="does not hold the built-in dataset"):
        ensure_builtin_dataset(tmp_path)


def test_deterministic_examples():
    a_image, a_mask = render_example(7)
    b_image, b_mask = render_example(7)
    np.testing.assert_array_equal(a_image, b_image)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert not np.array_equal(a_image, render_example(8)[0])


def test_every_class_present_and_colour_does_not_separate_shapes():
    images, masks = zip(*(render_example(i) for i in range(160)))
    images, masks = np.stack(images), np.stack(masks)
    assert set(np.unique(masks)) == set(range(len(CLASS_NAMES)))
    # A per-pixel colour classifier among the shape classes (quantised RGB ->
    # most frequent shape) fitted on 120 images and scored on 40 others.
    bins = (images // 32).astype(np.int64) @ np.array([64, 8, 1])
    fit, held_out = masks[:120] > 0, masks[120:] > 0
    table = np.zeros((512, len(CLASS_NAMES)), np.int64)
    np.add.at(table, (bins[:120][fit], masks[:120][fit]), 1)
    predicted = table.argmax(axis=1)[bins[120:][held_out]]
    accuracy = np.mean(predicted == masks[120:][held_out])
    majority = np.bincount(masks[120:][held_out]).max() / held_out.sum()
    assert accuracy < majority + 0.1, (accuracy, majority)
