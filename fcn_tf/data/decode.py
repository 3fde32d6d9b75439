"""Decode: every on-disk format into one canonical (image, mask) pair.

The canonical form is ``image`` uint8 ``[H, W, image_channels]`` (RGB or
grayscale) and ``mask`` uint8 ``[H, W]`` holding class ids ``0..C-1`` or the
ignore label. Mask encodings:

- ``ids``: one channel of class ids (the first channel if the file has more);
- ``palette``: the palette indices of a palette PNG, not its colours (a
  grayscale PNG is read as-is, so SBD's ``SegmentationClassAug`` works too);
- ``rgb``: colours mapped through the colour -> class table (``color_map``,
  or ``colors`` when no table is given); unknown colours become ignore;
- ``binary``: 0/255 (any value >= 128 counts as 1) mapped to classes 0/1.

Raw values listed in ``ignore_values`` map to the ignore label, and so does
any raw value that is not a class id (the verifier reports those).

Images go through TensorFlow's decoders (PNG, JPEG, BMP, GIF); TIFF images and
palette masks go through Pillow inside ``tf.numpy_function``. The NumPy
readers here are also what the verifier uses, so both see the same labels.
"""

import numpy as np
import tensorflow as tf
from PIL import Image

from fcn_tf.preprocessing import rgb_to_luma

_TIFF = r".*\.tiff?"


def label_lut(config):
    """uint8[256] table: raw mask value -> class id or ignore label."""
    lut = np.full(256, config.ignore_label, np.uint8)
    lut[: config.num_classes] = np.arange(config.num_classes)
    lut[list(config.ignore_values)] = config.ignore_label
    return lut


def color_table(config):
    """[(rgb tuple, label)] used by the ``rgb`` encoding."""
    if config.color_map:
        return [(tuple(e.color), e.label) for e in config.color_map]
    return [(tuple(c), i) for i, c in enumerate(config.colors)]


def _color_keys(rgb):
    rgb = np.asarray(rgb, np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


# --- NumPy (Pillow) readers: the verifier and the TF fallbacks -------------


def read_image_array(path, channels, allow_large=False):
    """uint8 ``[H, W, channels]`` pixels of an image file: the package's one image reader.

    Any mode Pillow reads (gray, gray+alpha, palette, RGB, RGBA, 16-bit) is
    converted to RGB, then to luma (:func:`fcn_tf.preprocessing.rgb_to_luma`)
    for one channel. Raises OSError on unreadable or truncated files.

    Args:
        path: the image file.
        channels: 3 (RGB) or 1 (luma).
        allow_large: lift Pillow's decompression-bomb limit (predict reads
            large aerial and scanned images on purpose).
    """
    limit = Image.MAX_IMAGE_PIXELS
    try:
        if allow_large:
            Image.MAX_IMAGE_PIXELS = None
        with Image.open(path) as im:
            im.load()
            array = np.asarray(im.convert("RGB"), np.uint8)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return array if channels == 3 else rgb_to_luma(array)


def read_mask_raw(path, encoding):
    """The raw stored mask values: [H, W] (or [H, W, 3] for ``rgb``) and the PIL mode."""
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if encoding == "rgb":
            return np.asarray(im.convert("RGB"), np.uint8), mode
        if encoding == "binary":
            return np.asarray(im.convert("L"), np.uint8), mode
        if mode == "P" and encoding == "palette":
            return np.asarray(im, np.uint8), mode
        array = np.asarray(im)
    if array.ndim == 3:
        array = array[..., 0]
    if array.dtype != np.uint8:  # 16-bit or 32-bit integer masks: the stored values
        largest = int(array.max()) if array.size else 0
        if largest > 255 or (array.size and int(array.min()) < 0):
            raise ValueError(
                f"{path}: a {mode} mask with values up to {largest}; class ids and the ignore "
                "label must be 0..255. Save the mask as an 8-bit PNG of class ids."
            )
        array = array.astype(np.uint8)
    return array, mode


def labels_from_raw(raw, config):
    """Map raw mask values to class ids / ignore (uint8 [H, W])."""
    if config.mask_encoding == "binary":
        return (raw >= 128).astype(np.uint8)
    if config.mask_encoding == "rgb":
        keys = _color_keys(raw)
        out = np.full(keys.shape, config.ignore_label, np.uint8)
        for color, label in color_table(config):
            out[keys == _color_keys(color)] = label
        return out
    return label_lut(config)[raw]


def read_mask_array(path, config):
    """uint8 [H, W] class ids / ignore label of the mask at ``path``."""
    raw, _ = read_mask_raw(path, config.mask_encoding)
    return labels_from_raw(raw, config)


# --- TensorFlow graph decoding ---------------------------------------------


def _numpy_call(fn, path, rank_shape):
    out = tf.numpy_function(fn, [path], tf.uint8, stateful=False)
    out.set_shape(rank_shape)
    return out


def to_channels(image, channels):
    """uint8 [H, W, any] (gray, gray+alpha, RGB, RGBA) -> [H, W, channels] (alpha dropped)."""
    gray = tf.shape(image)[-1] < 3
    if channels == 3:
        return tf.cond(gray, lambda: tf.tile(image[..., :1], [1, 1, 3]), lambda: image[..., :3])

    return tf.cond(gray, lambda: image[..., :1], lambda: rgb_to_luma(image))


def decode_image(path, channels):
    """uint8 [H, W, channels] tensor from a path tensor."""
    def with_pillow():
        return _numpy_call(lambda p: read_image_array(p.decode(), channels), path, [None, None, channels])

    def with_tf():
        # channels=0 then convert: not every TF decoder converts (BMP cannot give 1).
        image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
        return tf.ensure_shape(to_channels(image, channels), [None, None, channels])

    is_tiff = tf.strings.regex_full_match(tf.strings.lower(path), _TIFF)
    return tf.cond(is_tiff, with_pillow, with_tf)


def make_mask_decoder(config):
    """A function: path tensor -> uint8 [H, W] tensor of class ids / ignore."""
    encoding = config.mask_encoding
    if encoding == "palette":
        return lambda path: _numpy_call(lambda p: read_mask_array(p.decode(), config), path, [None, None])

    if encoding == "rgb":
        table_rows = color_table(config)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(_color_keys([c for c, _ in table_rows]), tf.int64),
                tf.constant([label for _, label in table_rows], tf.int64),
            ),
            default_value=config.ignore_label,
        )

    lut = tf.constant(label_lut(config))

    def decode_tf(path):
        channels = 3 if encoding == "rgb" else 0
        raw = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        if encoding == "rgb":
            rgb = tf.cast(raw, tf.int64)
            keys = (rgb[..., 0] * 65536) + (rgb[..., 1] * 256) + rgb[..., 2]
            return tf.cast(table.lookup(keys), tf.uint8)
        if encoding == "binary":
            gray = tf.cond(tf.shape(raw)[-1] >= 3, lambda: tf.image.rgb_to_grayscale(raw[..., :3])[..., 0], lambda: raw[..., 0])
            return tf.cast(gray >= 128, tf.uint8)
        return tf.gather(lut, tf.cast(raw[..., 0], tf.int32))

    def decode_ids(path):
        # A 16-bit PNG is read as its stored values (decode_image would scale
        # them to 8 bits: id 1 would become 0); values above 255 are refused.
        contents = tf.io.read_file(path)
        wide = tf.logical_and(tf.equal(tf.strings.substr(contents, 1, 3), "PNG"),
                              tf.equal(tf.strings.substr(contents, 24, 1), "\x10"))

        def values16():
            raw = tf.cast(tf.io.decode_png(contents, channels=0, dtype=tf.uint16)[..., 0], tf.int32)
            check = tf.debugging.Assert(tf.reduce_max(tf.concat([[0], tf.reshape(raw, [-1])], 0)) <= 255, [
                "16-bit mask with values above 255 (class ids must be 0..255; run `python -m "
                "fcn_tf.data verify`):", path])
            with tf.control_dependencies([check]):
                return tf.identity(raw)

        def values8():
            raw = tf.io.decode_image(contents, channels=0, expand_animations=False)
            return tf.cast(raw[..., 0], tf.int32)

        return tf.gather(lut, tf.cond(wide, values16, values8))

    def decode(path):
        is_tiff = tf.strings.regex_full_match(tf.strings.lower(path), _TIFF)
        return tf.cond(
            is_tiff,
            lambda: _numpy_call(lambda p: read_mask_array(p.decode(), config), path, [None, None]),
            lambda: tf.ensure_shape(decode_ids(path) if encoding == "ids" else decode_tf(path),
                                    [None, None]),
        )

    return decode


def make_decoder(config):
    """A function ``(image_path, mask_path) -> (image uint8 [H,W,C], mask uint8 [H,W])``.

    A size mismatch between image and mask fails with both file names.
    """
    decode_mask = make_mask_decoder(config)
    channels = config.image_channels

    def decode(image_path, mask_path):
        image = decode_image(image_path, channels)
        mask = decode_mask(mask_path)
        check = tf.debugging.Assert(
            tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(mask))),
            ["Image and mask sizes differ (run `python -m fcn_tf.data verify`):",
             image_path, tf.shape(image)[:2], mask_path, tf.shape(mask)],
        )
        with tf.control_dependencies([check]):
            return tf.identity(image), tf.identity(mask)

    return decode
