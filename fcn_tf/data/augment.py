"""Training augmentation on canonical (image, mask) pairs, stateless and seeded.

Order: photometric jitter (brightness, contrast, saturation, hue) on pixels in
[0, 255], then the optional camera effects that set one recording apart from
another (colour cast, gamma, Gaussian blur, sensor noise; image only, off by
default), then normalisation, then geometry on image and mask jointly:
random scale, optional small rotation, random crop to the training size with
padding, horizontal flip, and an optional elastic deformation of the crop
(Ronneberger et al., 2015: random displacements on a coarse grid, smoothly
interpolated to every pixel). Padding is 0 in the normalised image (the mean
pixel) and the ignore label in the mask, so padded pixels never score.

The mask is always sampled with nearest neighbour, at the same source points
as the image (bilinear). Without rotation only the crop's source window is
resized (``ResizeBilinear`` for the image, row/column gathers for the mask),
so a 2x upscale costs no more than the crop itself. With rotation one affine
``ImageProjectiveTransformV3`` per tensor maps crop pixels to source pixels.

Every random draw comes from the per-example ``seed`` (int [2]), so the
result depends only on the seed, never on thread scheduling.

Mixing whole batches (CutMix) is :mod:`fcn_tf.data.batch_mix`.
"""

import math

import numpy as np
import tensorflow as tf


def _uniform(seed, low, high):
    return tf.random.stateless_uniform([], seed, low, high, dtype=tf.float32)


def _randint(seed, low, high):
    """Uniform integer in [low, high] (inclusive)."""
    return tf.random.stateless_uniform([], seed, low, high + 1, dtype=tf.int32)


# RGB <-> YIQ: hue is a rotation of the IQ plane and saturation a scaling of
# it, so brightness, contrast, saturation and hue together are one affine map
# per pixel (one 3x3 matmul) instead of two RGB<->HSV round trips.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def photometric(image, seed, augment):
    """Brightness / contrast / saturation / hue jitter of a float [H,W,C] image in [0,255].

    Same parameter ranges as ``tf.image.random_{brightness,contrast,saturation,hue}``;
    hue and saturation act in YIQ space (a close approximation of HSV's).
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    channels = image.shape[-1]
    brightness = _uniform(seeds[0], -augment.brightness, augment.brightness) * 255.0
    contrast = _uniform(seeds[1], 1 - augment.contrast, 1 + augment.contrast)
    mean = tf.reduce_mean(image, axis=[0, 1])
    # Contrast about the per-channel mean, then brightness: x -> c x + offset.
    offset = (1.0 - contrast) * mean + brightness
    if channels != 3:
        return tf.clip_by_value(contrast * image + offset, 0.0, 255.0)
    saturation = _uniform(seeds[2], 1 - augment.saturation, 1 + augment.saturation)
    angle = _uniform(seeds[3], -augment.hue, augment.hue) * (2.0 * math.pi)
    cos, sin = tf.cos(angle) * saturation, tf.sin(angle) * saturation
    zero, one = tf.constant(0.0), tf.constant(1.0)
    iq = tf.stack([tf.stack([one, zero, zero]), tf.stack([zero, cos, -sin]),
                   tf.stack([zero, sin, cos])])
    color = tf.constant(_YIQ_TO_RGB, tf.float32) @ iq @ tf.constant(_RGB_TO_YIQ, tf.float32)
    matrix = tf.transpose(color)  # pixels are rows
    flat = tf.reshape(image, [-1, 3])
    out = flat @ (contrast * matrix) + tf.linalg.matvec(color, offset)
    return tf.reshape(tf.clip_by_value(out, 0.0, 255.0), tf.shape(image))


# Camera effects in the order they are applied, with the fold of the seed each draws from:
# switching one on or off never changes the draws of another.
CAMERA_EFFECTS = ("channel_shift", "gamma", "blur", "noise")


def camera_jitter(image, seed, augment):
    """Colour cast, gamma, blur and noise of a float [H,W,C] image in [0,255]: camera differences.

    Each effect is off at 0 (the default), and then adds no op to the graph:
    ``camera_jitter`` of an ``augment`` with all four off returns ``image``
    itself. Effect ``k`` of :data:`CAMERA_EFFECTS` draws from
    ``stateless_fold_in(seed, k)``.

    - ``channel_shift`` c: per-channel shift uniform in ``[-c, c] * 255``
      (white balance differs between cameras);
    - ``gamma`` g: ``255 * (x / 255) ** gamma``, gamma log-uniform in
      ``[1/(1+g), 1+g]`` (gamma and 1/gamma equally likely);
    - ``blur`` p: with probability p a separable Gaussian blur, sigma uniform
      in ``[0.1, blur_sigma]`` (:func:`gaussian_blur`);
    - ``noise`` n: additive Gaussian noise, its standard deviation uniform in
      ``[0, n]`` per image (pixel units), independent per pixel and channel.

    Pixels stay in [0, 255]. In :func:`augment_example` the effects act on the
    source pixels, before the random scale (so sigma and noise are in source
    pixels, as a camera's are).
    """
    if not any(getattr(augment, name) > 0 for name in CAMERA_EFFECTS):
        return image

    def seeds(name, count):
        folded = tf.random.experimental.stateless_fold_in(seed, CAMERA_EFFECTS.index(name))
        return tf.random.experimental.stateless_split(folded, count)

    if augment.channel_shift > 0:
        c = augment.channel_shift * 255.0
        shift = tf.random.stateless_uniform(tf.shape(image)[-1:], seeds("channel_shift", 1)[0],
                                            -c, c, dtype=tf.float32)
        image = tf.clip_by_value(image + shift, 0.0, 255.0)
    if augment.gamma > 0:
        limit = math.log1p(augment.gamma)
        gamma = tf.exp(_uniform(seeds("gamma", 1)[0], -limit, limit))
        image = 255.0 * tf.pow(image / 255.0, gamma)
    if augment.blur > 0:
        draw, sigma_seed = tf.unstack(seeds("blur", 2))
        sigma = _uniform(sigma_seed, 0.1, augment.blur_sigma)
        radius = math.ceil(3.0 * augment.blur_sigma)
        image = tf.cond(_uniform(draw, 0.0, 1.0) < augment.blur,
                        lambda: gaussian_blur(image, sigma, radius), lambda: image)
    if augment.noise > 0:
        std_seed, pixel_seed = tf.unstack(seeds("noise", 2))
        std = _uniform(std_seed, 0.0, augment.noise)
        noise = tf.random.stateless_normal(tf.shape(image), pixel_seed, dtype=tf.float32)
        image = tf.clip_by_value(image + std * noise, 0.0, 255.0)
    return image


def _reflect_indices(length, radius):
    """Source indices of an axis of ``length`` >= 1 padded by ``radius`` on both sides.

    Reflection without repeating the edge (``numpy.pad(mode="reflect")``),
    folded again as often as needed, so any length works (1 included).
    """
    period = tf.maximum(2 * length - 2, 1)
    index = tf.math.floormod(tf.range(-radius, length + radius), period)
    return tf.where(index >= length, period - index, index)


def gaussian_blur(image, sigma, radius):
    """Separable Gaussian blur of a float [H, W, C] image of any size, reflect padding.

    Args:
        image: float32 ``[H, W, C]``; sizes may be unknown until run time.
        sigma: standard deviation in pixels (a scalar tensor or float).
        radius: Python int, taps on each side (``2 * radius + 1`` in all).

    Example:
        >>> gaussian_blur(tf.zeros([1, 7, 3]), 1.0, radius=3).shape
        TensorShape([1, 7, 3])
    """
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-0.5 * tf.square(taps / sigma))
    weights = weights / tf.reduce_sum(weights)
    shape = tf.shape(image)
    padded = tf.gather(image, _reflect_indices(shape[0], radius), axis=0)
    padded = tf.gather(padded, _reflect_indices(shape[1], radius), axis=1)
    kernel = tf.tile(weights[:, None, None, None], tf.stack([1, 1, shape[2], 1]))
    strides = [1, 1, 1, 1]
    rows = tf.nn.depthwise_conv2d(padded[None], kernel, strides, "VALID")
    out = tf.nn.depthwise_conv2d(rows, tf.reshape(kernel, [1, -1, shape[2], 1]), strides, "VALID")
    return out[0]


def _matrix(rows):
    return tf.stack([tf.stack([tf.cast(v, tf.float32) for v in row]) for row in rows])


def _random_scale(seed, augment):
    low, high = augment.scale
    return _uniform(seed, low, high) if high > low else tf.constant(float(low))


def _gather_2d(tensor, rows, cols):
    """tensor[rows][:, cols] for [H, W].

    Two gathers, no Transpose: for integers TensorFlow's oneDNN graph pass logs an
    error line ("oneDNN supports DT_UINT8 only on platforms with AVX-512").
    """
    return tf.gather(tf.gather(tensor, rows), cols, axis=1)


def _crop_or_pad(image, mask, crop_hw, seeds, ignore_label):
    """Random crop of size ``crop_hw``; smaller sides are padded at a random place."""
    shape = tf.shape(mask)
    starts, pads, takes = [], [], []
    for axis in range(2):
        diff = shape[axis] - crop_hw[axis]
        offset = _randint(seeds[axis], tf.minimum(0, diff), tf.maximum(0, diff))
        starts.append(tf.maximum(offset, 0))
        pads.append(tf.maximum(-offset, 0))
        takes.append(tf.minimum(shape[axis], crop_hw[axis]))
    image = image[starts[0]:starts[0] + takes[0], starts[1]:starts[1] + takes[1]]
    mask = mask[starts[0]:starts[0] + takes[0], starts[1]:starts[1] + takes[1]]
    paddings = [[pads[a], crop_hw[a] - takes[a] - pads[a]] for a in range(2)]

    def pad():
        return (tf.pad(image, paddings + [[0, 0]]),
                tf.pad(mask, paddings, constant_values=ignore_label))

    return tf.cond(tf.reduce_any(tf.not_equal(takes, crop_hw)), pad, lambda: (image, mask))


def _class_centred_start(mask, window, start, seed, augment):
    """With probability ``class_crop``, a window start that centres a rare-class pixel.

    One of ``class_crop_classes`` present in ``mask`` is drawn uniformly (so a
    class with few pixels is as likely as one with many), then one of its
    pixels; the window is placed with that pixel in its middle half, clipped
    to the image. Images without those classes keep the random ``start``.
    """
    seeds = tf.random.experimental.stateless_split(seed, 5)
    classes = tf.constant(augment.class_crop_classes, mask.dtype)
    present = tf.reduce_any(tf.equal(mask[..., None], classes), axis=[0, 1])
    present_ids = tf.boolean_mask(classes, present)
    count = tf.shape(present_ids)[0]
    use = tf.logical_and(count > 0, _uniform(seeds[0], 0.0, 1.0) < augment.class_crop)

    def centred():
        chosen = present_ids[_randint(seeds[1], 0, count - 1)]
        pixels = tf.where(tf.equal(mask, chosen))
        pixel = tf.cast(pixels[_randint(seeds[2], 0, tf.shape(pixels)[0] - 1)], tf.int32)
        placed = []
        for a in range(2):
            quarter = window[a] // 4
            offset = window[a] // 2 + _randint(seeds[3 + a], -quarter, quarter)
            placed.append(tf.clip_by_value(pixel[a] - offset, 0, tf.shape(mask)[a] - window[a]))
        return placed

    return tf.cond(use, centred, lambda: list(start))


def _scale_crop(image, mask, seed, augment, crop_hw, ignore_label, colour):
    """Scale + crop (+ padding) without rotation; ``colour`` maps source pixels."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    shape = tf.shape(mask)
    s = _random_scale(seeds[0], augment)
    # The source window that covers the crop at scale s, at a random place.
    window = [tf.minimum(shape[a], tf.cast(tf.math.ceil(crop_hw[a] / s), tf.int32)) for a in range(2)]
    start = [_randint(seeds[1 + a], 0, shape[a] - window[a]) for a in range(2)]
    if augment.class_crop > 0:
        class_seed = tf.random.experimental.stateless_fold_in(seed, 7)
        start = _class_centred_start(mask, window, start, class_seed, augment)
    out = [tf.maximum(1, tf.cast(tf.round(tf.cast(window[a], tf.float32) * s), tf.int32))
           for a in range(2)]
    region = image[start[0]:start[0] + window[0], start[1]:start[1] + window[1]]
    image = tf.raw_ops.ResizeBilinear(images=colour(region)[None], size=tf.stack(out),
                                      half_pixel_centers=True)[0]
    # Nearest neighbour at the same half-pixel-centre points as ResizeBilinear.
    index = [
        start[a] + tf.minimum(window[a] - 1, tf.cast(
            (tf.range(out[a], dtype=tf.float32) + 0.5) * tf.cast(window[a], tf.float32)
            / tf.cast(out[a], tf.float32), tf.int32))
        for a in range(2)
    ]
    mask = _gather_2d(mask, index[0], index[1])
    return _crop_or_pad(image, mask, crop_hw, seeds[3:], ignore_label)


def crop_transform(source_hw, crop_hw, seed, augment):
    """The 8-vector projective transform mapping crop pixels to source pixels (rotation path)."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    h = tf.cast(source_hw[0], tf.float32)
    w = tf.cast(source_hw[1], tf.float32)
    ch, cw = float(crop_hw[0]), float(crop_hw[1])
    s = _random_scale(seeds[0], augment)
    sh, sw = h * s, w * s
    # Crop offset in the scaled image; negative offsets pad (image placed at random).
    y0 = tf.floor(_uniform(seeds[1], tf.minimum(0.0, sh - ch), tf.maximum(0.0, sh - ch) + 1e-6))
    x0 = tf.floor(_uniform(seeds[2], tf.minimum(0.0, sw - cw), tf.maximum(0.0, sw - cw) + 1e-6))
    angle = _uniform(seeds[3], -augment.rotation, augment.rotation) * (math.pi / 180.0)
    one, zero = 1.0, 0.0
    # Continuous coordinates (pixel centres at i + 0.5), composed right to left:
    # crop index -> centre -> scaled canvas -> rotate about its centre ->
    # source -> source index.
    to_centre = _matrix([[one, zero, 0.5], [zero, one, 0.5], [zero, zero, one]])
    shift = _matrix([[one, zero, x0], [zero, one, y0], [zero, zero, one]])
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = sw / 2.0, sh / 2.0
    rotate = _matrix([
        [cos, -sin, cx - cos * cx + sin * cy],
        [sin, cos, cy - sin * cx - cos * cy],
        [zero, zero, one],
    ])
    unscale = _matrix([[1.0 / s, zero, -0.5], [zero, 1.0 / s, -0.5], [zero, zero, one]])
    m = unscale @ rotate @ shift @ to_centre
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


def _rotate_scale_crop(image, mask, seed, augment, crop_hw, ignore_label, colour):
    transform = crop_transform(tf.shape(mask), crop_hw, seed, augment)
    image = _warp(colour(image), transform, crop_hw, "BILINEAR", 0.0)
    mask = _warp(mask[..., None], transform, crop_hw, "NEAREST", float(ignore_label))[..., 0]
    return image, mask


def augment_example(image, mask, seed, *, augment, crop_size, preprocessing, ignore_label):
    """Augment and normalise one pair.

    Args:
        image: uint8 or float ``[H, W, C]``, pixels in [0, 255].
        mask: uint8 ``[H, W]`` class ids / ignore label.
        seed: int ``[2]`` stateless seed of this example.
        augment: an :class:`~fcn_tf.data.config.AugmentConfig`
            (``enabled=False``: random crop with padding only).
        crop_size: ``(height, width)`` of the output.
        preprocessing: the :class:`~fcn_tf.preprocessing.Preprocessing` applied.
        ignore_label: mask padding value.

    Returns:
        ``(image float32 [h, w, C] normalised, mask uint8 [h, w])``; padding is
        0 (the mean pixel) in the image and ``ignore_label`` in the mask.
    """
    crop_hw = (int(crop_size[0]), int(crop_size[1]))
    photo_seed, geo_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    elastic_seed = tf.random.experimental.stateless_fold_in(seed, 4)

    def colour(pixels):
        pixels = tf.cast(pixels, tf.float32)
        if augment.enabled:
            pixels = photometric(pixels, photo_seed, augment)
            # Folds of photo_seed, never the splits photometric draws from.
            pixels = camera_jitter(pixels, photo_seed, augment)
        return preprocessing.apply(pixels)

    geometry = augment if augment.enabled else _NO_AUGMENT
    if geometry.rotation > 0:
        image, mask = _rotate_scale_crop(image, mask, geo_seed, geometry, crop_hw, ignore_label, colour)
    else:
        image, mask = _scale_crop(image, mask, geo_seed, geometry, crop_hw, ignore_label, colour)
    if geometry.flip:
        flip = _uniform(flip_seed, 0.0, 1.0) < 0.5
        image, mask = tf.cond(flip, lambda: (tf.reverse(image, [1]), tf.reverse(mask, [1])),
                              lambda: (image, mask))
    image = tf.ensure_shape(image, crop_hw + (image.shape[-1],))
    mask = tf.ensure_shape(mask, crop_hw)
    if geometry.elastic > 0:
        image, mask = elastic_deform(image, mask, elastic_seed, geometry.elastic,
                                     geometry.elastic_grid)
    return image, mask


def _sample_bilinear(image, y, x):
    """``image`` [H, W, C] at float coordinates ``y``, ``x`` [h, w] (clamped to the image)."""
    shape = tf.shape(image)
    y = tf.clip_by_value(y, 0.0, tf.cast(shape[0] - 1, tf.float32))
    x = tf.clip_by_value(x, 0.0, tf.cast(shape[1] - 1, tf.float32))
    y0, x0 = tf.floor(y), tf.floor(x)
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    y1, x1 = tf.minimum(y0 + 1, shape[0] - 1), tf.minimum(x0 + 1, shape[1] - 1)

    def at(yy, xx):
        return tf.gather_nd(image, tf.stack([yy, xx], axis=-1))

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def elastic_deform(image, mask, seed, sigma, grid):
    """Elastic deformation of an image [H, W, C] and its mask [H, W] (U-Net, 2015).

    Displacement vectors on a ``grid`` x ``grid`` lattice over the image are
    drawn from a normal distribution with standard deviation ``sigma`` pixels and interpolated bicubically to
    every pixel; the image is resampled bilinearly and the mask at the nearest
    source pixel, both at the same displaced points (clamped at the borders).
    """
    height, width = image.shape[0], image.shape[1]
    displacement = tf.random.stateless_normal([1, grid, grid, 2], seed) * sigma
    field = tf.image.resize(displacement, [height, width], method="bicubic")[0]
    rows, cols = tf.meshgrid(tf.range(height, dtype=tf.float32),
                             tf.range(width, dtype=tf.float32), indexing="ij")
    y, x = rows + field[..., 0], cols + field[..., 1]
    image = _sample_bilinear(image, y, x)
    nearest = tf.stack([
        tf.clip_by_value(tf.cast(tf.round(y), tf.int32), 0, height - 1),
        tf.clip_by_value(tf.cast(tf.round(x), tf.int32), 0, width - 1),
    ], axis=-1)
    return image, tf.gather_nd(mask, nearest)


class _NoAugment:
    """Augmentation off: a random crop (with padding) of the unscaled image only."""

    scale = (1.0, 1.0)
    rotation = 0.0
    flip = False
    elastic = 0.0
    elastic_grid = 3
    class_crop = 0.0
    class_crop_classes = ()


_NO_AUGMENT = _NoAugment()
