"""``data.augment.cutmix``: boxes of a batch's other crops, pasted with their labels."""

import numpy as np
import pytest
import tensorflow as tf

from fcn_tf.config import ConfigError
from fcn_tf.config.run_config import parse_config
from fcn_tf.data import build_training_epochs
from fcn_tf.data.batch_mix import CUT_MIX_AREA, cut_mix
from fcn_tf.preprocessing import Preprocessing
from fcn_tf.training import setup
from train_fixtures import tiny_config


def _batch(count=6, height=24, width=32):
    """Example ``i`` is the constant ``i`` in image (3 channels) and mask."""
    ids = np.arange(count)[:, None, None] * np.ones((1, height, width), np.int64)
    images = np.repeat(ids[..., None], 3, axis=-1).astype(np.float32)
    return tf.constant(images), tf.constant(ids.astype(np.int32))


def _mixed(probability, seed=(1, 2), count=6):
    images, masks = _batch(count)
    out_images, out_masks = cut_mix(images, masks, tf.constant(seed, tf.int64), probability)
    return out_images.numpy(), out_masks.numpy()


def test_every_box_comes_from_the_neighbour_with_its_labels():
    images, masks = _mixed(1.0)
    count, height, width = masks.shape
    for i in range(count):
        # Image and mask agree everywhere: every pasted pixel keeps its own label.
        np.testing.assert_array_equal(images[i, ..., 0], masks[i])
        np.testing.assert_array_equal(images[i, ..., 2], masks[i])
        assert set(np.unique(masks[i])) == {i, (i - 1) % count}
        rows, cols = np.nonzero(masks[i] == (i - 1) % count)
        box = masks[i, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert (box == (i - 1) % count).all(), "the pasted region is one box"
        share = len(rows) / (height * width)
        assert CUT_MIX_AREA[0] - 0.05 <= share <= CUT_MIX_AREA[1] + 0.05, share


def test_probability_sets_the_share_of_mixed_crops_and_zero_changes_nothing():
    for probability, low, high in ((0.0, 0.0, 0.0), (0.5, 0.3, 0.7), (1.0, 1.0, 1.0)):
        hits = []
        for seed in range(8):
            masks = _mixed(probability, (seed, 3), 16)[1]
            hits += [not (masks[i] == i).all() for i in range(16)]
        rate = float(np.mean(hits))
        assert low <= rate <= high, (probability, rate)


def test_the_same_seed_gives_the_same_boxes():
    a, b, c = _mixed(0.7, (5, 6)), _mixed(0.7, (5, 6)), _mixed(0.7, (6, 5))
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def _epoch(tmp_path, cutmix, batch_size=4):
    config = tiny_config(tmp_path, train={"batch_size": batch_size})
    config["data"]["augment"] = {"enabled": True, "scale": [1.0, 1.0], "flip": False,
                                 "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0,
                                 "cutmix": cutmix}
    data = parse_config(config).data
    preprocessing = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    ds = build_training_epochs(data, "train", batch_size=batch_size, preprocessing=preprocessing,
                               seeds=[7], steps=2)
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_the_pipeline_pastes_boxes_only_when_asked(tmp_path):
    plain = _epoch(tmp_path / "a", 0.0)
    mixed = _epoch(tmp_path / "b", 1.0)
    changed = 0
    for (x0, y0), (x1, y1) in zip(plain, mixed):
        for i in range(len(y0)):
            moved = (y1[i] != y0[i]) | (x1[i] != x0[i]).any(axis=-1)
            if moved.any():
                changed += 1
                # What moved came from the neighbour in the batch, image and mask together.
                j = (i - 1) % len(y0)
                np.testing.assert_array_equal(x1[i][moved], x0[j][moved])
                np.testing.assert_array_equal(y1[i][moved], y0[j][moved])
    assert changed >= len(plain) * len(plain[0][1]) - 1  # a box may cover equal pixels


@pytest.mark.parametrize("setting, message", [
    ({"cutmix": 1.5}, r"data\.augment\.cutmix: must be <= 1\.0, received 1\.5"),
    ({"cutmix": -0.1}, r"data\.augment\.cutmix: must be >= 0\.0"),
])
def test_bad_values_are_refused(tmp_path, setting, message):
    config = tiny_config(tmp_path)
    config["data"]["augment"] = setting
    with pytest.raises(ConfigError, match=message):
        parse_config(config)


def test_a_batch_of_one_is_refused_before_training(tmp_path):
    config = tiny_config(tmp_path, train={"batch_size": 1})
    config["data"]["augment"] = {"cutmix": 0.5}
    with pytest.raises(ConfigError, match=r"cutmix is 0\.5 with train\.batch_size 1.*Raise "
                                          r"train\.batch_size or set cutmix to 0"):
        setup.preflight(parse_config(config))
