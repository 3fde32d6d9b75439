"""Augmentation: image and mask stay aligned, padding, value ranges, determinism."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from data_fixtures import IGNORE, make_dataset
from fcn_tf.data import AugmentConfig, build_dataset, build_training_epochs, load_data_config
from fcn_tf.preprocessing import Preprocessing

STEP = 40  # red = 40 k + 20  ->  class k = red // 40
NUM_CLASSES = 7
MEAN = (50.0, 60.0, 70.0)  # never a pixel value, so normalised 0 means padding
PREPROCESSING = Preprocessing(mean=MEAN, std=(1.0, 1.0, 1.0))
NO_PHOTO = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)


def blocky_image(seed, size=(24, 32), block=8):
    rng = np.random.default_rng(seed)
    cells = (size[0] // block + 1, size[1] // block + 1)
    red = rng.integers(0, NUM_CLASSES, cells) * STEP + 20
    green, blue = rng.integers(0, 256, cells), rng.integers(0, 256, cells)
    grid = np.stack([red, green, blue], -1).astype(np.uint8)
    return np.repeat(np.repeat(grid, block, 0), block, 1)[: size[0], : size[1]]


def derived_mask(seed):
    return (blocky_image(seed)[..., 0] // STEP).astype(np.uint8)


@pytest.fixture(scope="module")
def blocky_config(tmp_path_factory):
    path, _ = make_dataset(tmp_path_factory.mktemp("blocky"), "camvid", "ids",
                           counts={"train": 8}, image_fn=blocky_image, label_fn=derived_mask)
    config = load_data_config(path)
    return dataclasses.replace(config, num_classes=NUM_CLASSES, class_names=None, colors=None,
                               crop_size=(20, 28), deterministic=True)


def _batches(config, augment, epochs=2, seed=0):
    config = dataclasses.replace(config, augment=augment)
    ds = build_dataset(config, "train", training=True, batch_size=4,
                       preprocessing=PREPROCESSING, seed=seed)
    return [(x.numpy(), y.numpy()) for _ in range(epochs) for x, y in ds]


def _locally_constant(red):
    """Pixels whose 3x3 neighbourhood has one red value (not on a resampled edge)."""
    padded = np.pad(red, ((0, 0), (1, 1), (1, 1)), mode="edge")
    same = np.ones(red.shape, bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            same &= padded[:, dy:dy + red.shape[1], dx:dx + red.shape[2]] == red
    return same


GEOMETRIES = {
    "flip": dict(scale=(1.0, 1.0), flip=True),
    "crop_pad": dict(scale=(0.5, 0.5), flip=False),
    "scale": dict(scale=(0.5, 2.0), flip=False),
    "rotation": dict(scale=(1.0, 1.0), flip=False, rotation=20.0),
    "all": dict(scale=(0.5, 2.0), flip=True, rotation=15.0),
    "elastic": dict(scale=(1.0, 1.0), flip=False, elastic=3.0, elastic_grid=3),
    "all_elastic": dict(scale=(0.5, 2.0), flip=True, rotation=15.0, elastic=2.0),
}


@pytest.mark.parametrize("name", GEOMETRIES)
def test_image_and_mask_stay_aligned(blocky_config, name):
    batches = _batches(blocky_config, AugmentConfig(**GEOMETRIES[name], **NO_PHOTO))
    images = np.concatenate([b[0] for b in batches])
    masks = np.concatenate([b[1] for b in batches])
    red = np.round(images[..., 0] + MEAN[0])  # undo normalisation
    labelled = masks != IGNORE
    exact = name in ("flip", "crop_pad")  # integer shifts: every pixel must match
    checked = labelled if exact else labelled & _locally_constant(red)
    assert checked.sum() > (0.9 if exact else 0.25) * labelled.sum()
    np.testing.assert_array_equal(masks[checked], red[checked] // STEP)
    # Padding: ignore label in the mask, the mean pixel (0 after normalisation) in the image.
    padding = np.all(images == 0.0, axis=-1)
    if name == "crop_pad":  # 24x32 at scale 0.5 is 12x16, inside a 20x28 crop
        assert np.all(masks[padding] == IGNORE) and labelled.sum(axis=(1, 2)).max() == 12 * 16
        assert np.all(padding[~labelled])
    assert np.all(masks[padding] == IGNORE)


def test_elastic_deformation_moves_pixels_smoothly_and_is_seeded(blocky_config):
    plain = _batches(blocky_config, AugmentConfig(scale=(1.0, 1.0), flip=False, **NO_PHOTO))
    augment = AugmentConfig(scale=(1.0, 1.0), flip=False, elastic=3.0, **NO_PHOTO)
    warped = _batches(blocky_config, augment)
    again = _batches(blocky_config, augment)
    for (image, mask), (image2, mask2) in zip(warped, again):
        np.testing.assert_array_equal(image, image2)
        np.testing.assert_array_equal(mask, mask2)
    moved = np.mean([np.mean(a[1] != b[1]) for a, b in zip(plain, warped)])
    assert 0.02 < moved < 0.6  # boundaries shift by a few pixels; most pixels keep their class


def test_photometric_keeps_masks_and_padding(blocky_config):
    augment = AugmentConfig(scale=(0.5, 1.5), rotation=10.0, brightness=0.3, contrast=0.3,
                            saturation=0.3, hue=0.1)
    batches = _batches(blocky_config, augment)
    for images, masks in batches:
        assert images.dtype == np.float32 and masks.dtype == np.int32
        assert set(np.unique(masks)) <= set(range(NUM_CLASSES)) | {IGNORE}
        raw = images + np.float32(MEAN)
        assert raw.min() >= -1e-3 and raw.max() <= 255.0 + 1e-3
        assert np.all(masks[np.all(images == 0.0, axis=-1)] == IGNORE)
    # Photometric changes colours: the same geometry without it differs.
    plain = _batches(blocky_config, dataclasses.replace(augment, **NO_PHOTO))
    assert not np.allclose(batches[0][0], plain[0][0])
    np.testing.assert_array_equal(batches[0][1], plain[0][1])  # same seeds, same geometry


def test_augmentation_off_is_a_plain_crop(blocky_config):
    batches = _batches(blocky_config, AugmentConfig(enabled=False), epochs=1)
    images, masks = batches[0]
    red = np.round(images[..., 0] + MEAN[0])
    assert np.all(masks != IGNORE)  # 20x28 crop of 24x32: no padding
    np.testing.assert_array_equal(masks, red // STEP)


def test_seeded_and_deterministic(blocky_config):
    augment = AugmentConfig(rotation=5.0)
    first = _batches(blocky_config, augment, seed=3)
    again = _batches(blocky_config, augment, seed=3)
    other = _batches(blocky_config, augment, seed=4)
    for (a, am), (b, bm) in zip(first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(am, bm)
    assert not np.array_equal(first[0][0], other[0][0])
    assert not np.array_equal(first[0][0], first[2][0])  # epoch 2 is re-drawn


def test_per_replica_batch_and_file_sharding(blocky_config):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    config = dataclasses.replace(blocky_config, augment=AugmentConfig(enabled=False))
    ds = build_dataset(config, "train", training=True, batch_size=4,
                       preprocessing=PREPROCESSING, input_context=context)
    batches = list(ds)
    assert len(batches) == 2 and batches[0][0].shape[0] == 2  # 8 files / 2 workers, 2 per replica
    full = build_dataset(config, "train", training=False, batch_size=8,
                         preprocessing=PREPROCESSING, input_context=context)
    (images, _), = list(full)
    assert images.shape[0] == 4


def test_mirrored_strategy_distributes(blocky_config):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    config = dataclasses.replace(blocky_config, augment=AugmentConfig(enabled=False))
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: build_dataset(config, "train", training=True, batch_size=4,
                                  preprocessing=PREPROCESSING, input_context=ctx))
    images, masks = next(iter(dist))
    assert images.shape == (4, 20, 28, 3) and masks.shape == (4, 20, 28)


@pytest.mark.parametrize("cache", ["memory", "off"])
def test_training_epochs_equal_separate_epoch_pipelines(blocky_config, cache):
    config = dataclasses.replace(blocky_config, cache=cache,
                                 augment=AugmentConfig(scale=(0.5, 2.0), rotation=5.0))
    steps, seeds = 3, [7, 8, 9]
    chained = [(x.numpy(), y.numpy()) for x, y in build_training_epochs(
        config, "train", batch_size=4, preprocessing=PREPROCESSING, seeds=seeds, steps=steps)]
    separate = [(x.numpy(), y.numpy()) for seed in seeds for x, y in build_dataset(
        config, "train", training=True, batch_size=4, preprocessing=PREPROCESSING,
        seed=seed).repeat().take(steps)]
    assert len(chained) == len(separate) == 9
    for (x1, y1), (x2, y2) in zip(chained, separate):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
