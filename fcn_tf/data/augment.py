"""Training augmentation on canonical (image, mask) pairs, stateless and seeded.

Geometry (random scale, optional small rotation, random crop with padding,
horizontal flip) is folded into one affine map from crop pixels to source
pixels, applied with a single ``ImageProjectiveTransformV3`` to the image
(bilinear) and to the mask (nearest, always). Only the crop is computed, so
scaling a large image up costs no more than the crop itself. Pixels that fall
outside the source are padding: the mean pixel for the image (the transform
runs on ``image - mean`` with fill 0) and the ignore label for the mask.

Photometric jitter (brightness, contrast, saturation, hue) runs before the
geometry, so padding stays exactly the mean pixel and becomes 0 after
normalisation.

Every random draw comes from a per-example ``seed`` (shape [2] int), so
results depend only on the seed, never on thread scheduling.
"""

import math

import tensorflow as tf


def _uniform(seed, low, high):
    return tf.random.stateless_uniform([], seed, low, high, dtype=tf.float32)


def photometric(image, seed, augment):
    """Brightness / contrast / saturation / hue jitter of a float [H,W,C] image in [0,255]."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    x = image / 255.0
    if augment.brightness > 0:
        x = tf.image.stateless_random_brightness(x, augment.brightness, seeds[0])
    if augment.contrast > 0:
        x = tf.image.stateless_random_contrast(x, 1 - augment.contrast, 1 + augment.contrast, seeds[1])
    if image.shape[-1] == 3:
        if augment.saturation > 0:
            x = tf.image.stateless_random_saturation(
                x, 1 - augment.saturation, 1 + augment.saturation, seeds[2]
            )
        if augment.hue > 0:
            x = tf.image.stateless_random_hue(x, augment.hue, seeds[3])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def _matrix(rows):
    return tf.stack([tf.stack([tf.cast(v, tf.float32) for v in row]) for row in rows])


def crop_transform(source_hw, crop_hw, seed, augment):
    """The 8-vector projective transform mapping crop pixels to source pixels."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    h = tf.cast(source_hw[0], tf.float32)
    w = tf.cast(source_hw[1], tf.float32)
    ch, cw = float(crop_hw[0]), float(crop_hw[1])
    low, high = augment.scale
    s = _uniform(seeds[0], low, high) if high > low else tf.constant(float(low))
    sh, sw = h * s, w * s
    # Crop offset in the scaled image; negative offsets pad (image placed at random).
    y0 = _uniform(seeds[1], tf.minimum(0.0, sh - ch), tf.maximum(0.0, sh - ch) + 1e-6)
    x0 = _uniform(seeds[2], tf.minimum(0.0, sw - cw), tf.maximum(0.0, sw - cw) + 1e-6)
    y0, x0 = tf.floor(y0), tf.floor(x0)
    if augment.rotation > 0:
        angle = _uniform(seeds[3], -augment.rotation, augment.rotation) * (math.pi / 180.0)
    else:
        angle = tf.constant(0.0)
    if augment.flip:
        flipped = _uniform(seeds[4], 0.0, 1.0) < 0.5
        sign, flip_offset = tf.where(flipped, -1.0, 1.0), tf.where(flipped, cw, 0.0)
    else:
        sign, flip_offset = 1.0, 0.0
    one, zero = 1.0, 0.0
    # Continuous coordinates (pixel centres at i + 0.5), composed right to left:
    # crop index -> centre -> optional flip -> scaled canvas -> rotate about
    # its centre -> source -> source index.
    to_centre = _matrix([[one, zero, 0.5], [zero, one, 0.5], [zero, zero, one]])
    flip_m = _matrix([[sign, zero, flip_offset], [zero, one, zero], [zero, zero, one]])
    shift = _matrix([[one, zero, x0], [zero, one, y0], [zero, zero, one]])
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = sw / 2.0, sh / 2.0
    rotate = _matrix([
        [cos, -sin, cx - cos * cx + sin * cy],
        [sin, cos, cy - sin * cx - cos * cy],
        [zero, zero, one],
    ])
    unscale = _matrix([[1.0 / s, zero, -0.5], [zero, 1.0 / s, -0.5], [zero, zero, one]])
    m = unscale @ rotate @ shift @ flip_m @ to_centre
    return tf.reshape(m, [9])[:8]


def _warp(tensor, transform, crop_hw, interpolation, fill):
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tensor[None],
        transforms=transform[None],
        output_shape=tf.constant(crop_hw, tf.int32),
        fill_value=tf.constant(fill, tf.float32),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )[0]


def augment_example(image, mask, seed, *, augment, crop_size, mean, ignore_label):
    """Augment one pair; returns (float32 [ch,cw,C] in [0,255], uint8 [ch,cw]).

    Args:
        image: uint8 or float [H, W, C], pixels in [0, 255].
        mask: uint8 [H, W] class ids / ignore label.
        seed: int [2] stateless seed of this example.
        augment: an :class:`~fcn_tf.data.config.AugmentConfig`.
        crop_size: (height, width) of the output.
        mean: per-channel mean pixel used as image padding.
        ignore_label: mask padding value.
    """
    image = tf.cast(image, tf.float32)
    crop_hw = (int(crop_size[0]), int(crop_size[1]))
    photo_seed, geo_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if augment.enabled:
        image = photometric(image, photo_seed, augment)
        transform = crop_transform(tf.shape(mask), crop_hw, geo_seed, augment)
    else:
        transform = crop_transform(tf.shape(mask), crop_hw, geo_seed, _NO_AUGMENT)
    mean = tf.constant(mean, tf.float32)
    image = _warp(image - mean, transform, crop_hw, "BILINEAR", 0.0) + mean
    mask = _warp(mask[..., None], transform, crop_hw, "NEAREST", float(ignore_label))[..., 0]
    image.set_shape(crop_hw + (image.shape[-1],))
    mask.set_shape(crop_hw)
    return image, mask


class _NoAugment:
    """Augmentation off: a random crop (with padding) of the unscaled image only."""

    scale = (1.0, 1.0)
    rotation = 0.0
    flip = False


_NO_AUGMENT = _NoAugment()
