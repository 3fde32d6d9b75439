"""Augmentation of whole training batches: CutMix of crops and their masks.

Runs after :mod:`fcn_tf.data.augment` has made each crop: it pastes a box of
one crop of the batch into its neighbour, image and mask alike, so every
label stays exact. Seeded per batch (int [2]), stateless like the per-crop
augmentation.
"""

import tensorflow as tf

CUT_MIX_AREA = (0.1, 0.5)


def cut_mix(images, masks, seed, probability, area=CUT_MIX_AREA):
    """CutMix for segmentation: boxes of other examples pasted, with their labels.

    With ``probability``, example ``i`` of the batch takes a box of example
    ``i - 1`` (the batch rolled by one; batches are shuffled, so the
    neighbour is a random image): the same box of its image and its mask,
    so every label stays exact. The box has the crop's aspect ratio, covers
    a fraction of it drawn uniformly in ``area``, and lies anywhere inside.
    Yun et al., "CutMix", ICCV 2019; French et al., "Semi-supervised
    semantic segmentation needs strong, varied perturbations", BMVC 2020
    (CutMix of images and their masks).

    Args:
        images: ``[B, H, W, C]`` (any dtype); masks: ``[B, H, W]``.
        seed: int ``[2]`` stateless seed of the batch.
        probability: chance that an example gets a box.
        area: ``(low, high)`` fraction of the crop a box covers.
    """
    shape = tf.shape(masks)
    batch, height, width = shape[0], shape[1], shape[2]
    apply_seed, area_seed, row_seed, col_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    apply = tf.random.stateless_uniform([batch], apply_seed) < probability
    side = tf.sqrt(tf.random.stateless_uniform([batch], area_seed, area[0], area[1]))
    box_h = tf.cast(tf.round(side * tf.cast(height, tf.float32)), tf.int32)
    box_w = tf.cast(tf.round(side * tf.cast(width, tf.float32)), tf.int32)
    top = tf.cast(tf.random.stateless_uniform([batch], row_seed)
                  * tf.cast(height - box_h + 1, tf.float32), tf.int32)
    left = tf.cast(tf.random.stateless_uniform([batch], col_seed)
                   * tf.cast(width - box_w + 1, tf.float32), tf.int32)
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + box_h)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + box_w)[:, None, None])
              & apply[:, None, None])
    images = tf.where(inside[..., None], tf.roll(images, 1, axis=0), images)
    masks = tf.where(inside, tf.roll(masks, 1, axis=0), masks)
    return images, masks
