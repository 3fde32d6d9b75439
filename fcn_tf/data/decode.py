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

Every file's header is read first (:func:`read_header`, no pixel decoded):
an image or mask with more pixels than the limit (``data.max_image_pixels``,
predict's ``--max-image-pixels``) is refused there with
:class:`ImageTooLargeError`, and its EXIF orientation is taken. Images and
masks alike are then turned upright by their EXIF orientation, as photo
viewers and annotation tools show them: the Pillow readers here do it
(:func:`orient_array`), and so does the TensorFlow pipeline
(:func:`orient_tensor`, with the orientation read from the header, since TF's
decoders ignore EXIF). 16-bit images become 8-bit by their high byte, as TF's
decoders do.

Images go through TensorFlow's decoders (PNG, JPEG, BMP, GIF); TIFF images and
palette masks go through Pillow inside ``tf.numpy_function``. The NumPy
readers here are also what the verifier and predict use, so all see the same
pixels and labels.
"""

import dataclasses
import os
import stat
import threading

import numpy as np
import tensorflow as tf
from PIL import Image

from fcn_tf.data.config import DEFAULT_MAX_IMAGE_PIXELS
from fcn_tf.preprocessing import rgb_to_luma

_TIFF = r".*\.tiff?"
# The config key that sets the pixel limit of dataset files, as refusals name it.
MAX_PIXELS_KEY = "data.max_image_pixels"
EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> (flip rows, flip columns, then swap rows and columns):
# the same turns as PIL.ImageOps.exif_transpose.
_FLIP_ROWS = (3, 4, 6, 7)
_FLIP_COLUMNS = (2, 3, 7, 8)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# Pillow's own decompression-bomb check is a process-wide setting; the limit
# here replaces it, and this lock keeps two threads from swapping it at once.
_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageTooLargeError(ValueError):
    """An image whose header declares more pixels than the limit; nothing was decoded.

    ``str(error)`` starts with the file; ``detail`` is the rest.
    """

    def __init__(self, path, detail):
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = path, detail


@dataclasses.dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding a pixel.

    Attributes:
        path: the file.
        stored_size: ``(height, width)`` as stored in the file.
        orientation: the EXIF orientation, 1 (none) to 8.
        format: Pillow's name of the format (``"JPEG"``, ``"PNG"`` ...).
        lossy: the pixels went through lossy compression (JPEG, lossy WebP,
            JPEG-compressed TIFF), so stored values are not the values written.
    """

    path: str
    stored_size: tuple
    orientation: int
    format: str
    lossy: bool

    @property
    def size(self):
        """``(height, width)`` once turned upright by the EXIF orientation."""
        height, width = self.stored_size
        return (width, height) if self.orientation >= 5 else (height, width)

    def describe(self):
        """``"480x360"`` (HxW), or with the stored size and the EXIF orientation applied."""
        text = "{}x{}".format(*self.size)
        if self.orientation != 1:
            text += " (stored {}x{}, EXIF orientation {} applied)".format(
                *self.stored_size, self.orientation)
        return text


def _not_openable(path):
    """Why ``path`` is no file to hand to an image decoder, or ``None``."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a symbolic link to a missing file ({os.readlink(path)})"
        raise
    if stat.S_ISDIR(mode):
        return "a folder, not an image file"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, socket or device), so it was not opened"
    if os.path.getsize(path) == 0:
        return "an empty file (0 bytes)"
    return None


def _open(path):
    """The image at ``path`` opened lazily (header only; pixels decode on ``load``).

    Raises OSError, with what the file is instead, for a folder, a pipe, an
    empty file or bytes that are not an image.
    """
    problem = _not_openable(path)
    if problem:
        raise OSError(problem)
    with _PILLOW_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        except Image.UnidentifiedImageError:
            with open(path, "rb") as handle:
                head = handle.read(12)
            raise OSError(f"not an image Pillow can read (the file starts with {head!r})") from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _orientation(image):
    """EXIF orientation (1-8) of an opened image; 1 when there is none or it is invalid.

    A PNG's orientation is taken from an ``eXIf`` chunk before the pixel data
    only (one after it would need the whole image decoded first).
    """
    try:
        if image.format == "PNG":
            raw = image.info.get("exif")
            exif = Image.Exif()
            if raw:
                exif.load(raw)
        else:
            exif = image.getexif()
        value = exif.get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block leaves the image as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _webp_is_lossy(path):
    """Whether a WebP file holds lossy (VP8) rather than lossless (VP8L) image data."""
    with open(path, "rb") as handle:
        data = handle.read(1 << 16)
    position = 12
    while position + 8 <= len(data):
        chunk = data[position:position + 4]
        if chunk in (b"VP8 ", b"VP8L"):
            return chunk == b"VP8 "
        size = int.from_bytes(data[position + 4:position + 8], "little")
        position += 8 + size + (size & 1)
    return True  # not found in the first 64 KB: assume the worst


def _is_lossy(image, path):
    if image.format in ("JPEG", "MPO"):
        return True
    if image.format == "WEBP":
        return _webp_is_lossy(path)
    return image.format == "TIFF" and "jpeg" in str(image.info.get("compression", ""))


def _header(image, path, max_pixels, setting):
    width, height = image.size
    header = ImageHeader(os.fspath(path), (height, width), _orientation(image), image.format,
                         _is_lossy(image, path))
    if max_pixels is not None and height * width > max_pixels:
        megabytes = os.path.getsize(path) / 2**20
        raise ImageTooLargeError(os.fspath(path), (
            f"{width}x{height} pixels (WxH: {height * width:,} pixels, a {image.format} of "
            f"{megabytes:.1f} MB on disk), over the limit of {max_pixels:,} pixels; nothing was "
            f"decoded. {setting} sets the limit: raise it if the machine has the memory (about "
            "10 bytes per pixel), or cut the image into tiles."
        ))
    return header


def read_header(path, max_pixels=None, setting="max_pixels"):
    """The :class:`ImageHeader` of an image file, read without decoding its pixels.

    Args:
        path: the image file.
        max_pixels: refuse an image with more pixels than this
            (:class:`ImageTooLargeError`); ``None`` for no limit.
        setting: what the refusal names as the setting that raises the limit
            (a parameter, a config key or a flag).

    Raises:
        OSError: a folder, a pipe, an empty or unreadable file, or not an image.
        ImageTooLargeError: over ``max_pixels``.
    """
    with _open(path) as image:
        return _header(image, path, max_pixels, setting)


def orient_array(array, orientation):
    """``array`` ``[H, W, ...]`` turned upright by EXIF ``orientation`` (``ImageOps.exif_transpose``)."""
    if orientation in _FLIP_ROWS:
        array = array[::-1]
    if orientation in _FLIP_COLUMNS:
        array = array[:, ::-1]
    if orientation >= 5:
        array = array.swapaxes(0, 1)
    return np.ascontiguousarray(array) if orientation != 1 else array


def orient_tensor(image, orientation):
    """:func:`orient_array` for a tensor ``[H, W]`` or ``[H, W, C]`` and an int32 orientation."""
    if isinstance(orientation, int) and orientation == 1:
        return image
    orientation = tf.cast(orientation, tf.int32)
    flip_rows = tf.reduce_any(tf.equal(orientation, _FLIP_ROWS))
    flip_columns = tf.reduce_any(tf.equal(orientation, _FLIP_COLUMNS))
    image = tf.cond(flip_rows, lambda: tf.reverse(image, [0]), lambda: image)
    image = tf.cond(flip_columns, lambda: tf.reverse(image, [1]), lambda: image)
    return tf.cond(orientation >= 5, lambda: _swap_rows_and_columns(image), lambda: image)


def _swap_rows_and_columns(tensor):
    """``tensor`` ``[H, W, ...]`` as ``[W, H, ...]``, by one gather and no Transpose.

    TensorFlow's oneDNN graph pass logs an error line for a Transpose of
    integers ("oneDNN supports DT_UINT8 only on platforms with AVX-512"), and
    Grappler turns a float one between two casts back into one of integers.
    """
    shape = tf.shape(tensor)
    height, width = shape[0], shape[1]
    pixels = tf.reshape(tensor, tf.concat([[height * width], shape[2:]], 0))
    return tf.gather(pixels, tf.range(height)[None, :] * width + tf.range(width)[:, None])


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


def _rgb_pixels(image):
    """uint8 ``[H, W, 3]`` of a loaded Pillow image of any mode (16-bit: the high byte)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        gray = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), np.uint8)


def read_image(path, channels, max_pixels=DEFAULT_MAX_IMAGE_PIXELS, setting="max_pixels"):
    """``(pixels, header)``: uint8 ``[H, W, channels]`` upright pixels and the :class:`ImageHeader`.

    Any mode Pillow reads (gray, gray+alpha, palette, RGB, RGBA, CMYK) is
    converted to RGB (alpha dropped), a 16-bit image by its high byte (as
    TF's decoders), then to luma (:func:`fcn_tf.preprocessing.rgb_to_luma`)
    for one channel; the EXIF orientation is applied (:func:`orient_array`).

    Args:
        path: the image file.
        channels: 3 (RGB) or 1 (luma).
        max_pixels: refuse, before decoding, an image with more pixels
            (:class:`ImageTooLargeError`); ``None`` for no limit.
        setting: the setting a refusal names to raise the limit.

    Raises:
        OSError: unreadable, truncated or not an image (the message says which).
        ImageTooLargeError: more than ``max_pixels`` pixels.
    """
    with _open(path) as image:
        header = _header(image, path, max_pixels, setting)
        image.load()
        array = orient_array(_rgb_pixels(image), header.orientation)
    return (array if channels == 3 else rgb_to_luma(array)), header


def read_image_array(path, channels, max_pixels=DEFAULT_MAX_IMAGE_PIXELS, setting="max_pixels"):
    """uint8 ``[H, W, channels]`` pixels of an image file: the package's one image reader.

    :func:`read_image` without the header; the same arguments.
    """
    return read_image(path, channels, max_pixels, setting)[0]


def read_mask_raw(path, encoding, max_pixels=DEFAULT_MAX_IMAGE_PIXELS, setting="max_pixels"):
    """``(values, mode, header)``: the raw stored mask values, upright, the PIL mode and header.

    ``values`` is ``[H, W]`` (``[H, W, 3]`` for ``rgb``); the EXIF
    orientation is applied as to images. ``max_pixels`` as in :func:`read_image`.
    """
    with _open(path) as im:
        header = _header(im, path, max_pixels, setting)
        im.load()
        mode = im.mode
        if encoding == "rgb":
            array = np.asarray(im.convert("RGB"), np.uint8)
        elif encoding == "binary":
            array = np.asarray(im.convert("L"), np.uint8)
        elif mode == "P" and encoding == "palette":
            array = np.asarray(im, np.uint8)
        else:
            array = np.asarray(im)
    if encoding in ("ids", "palette") and array.ndim == 3:
        array = array[..., 0]
    if array.dtype != np.uint8:  # 16-bit or 32-bit integer masks: the stored values
        largest = int(array.max()) if array.size else 0
        if largest > 255 or (array.size and int(array.min()) < 0):
            raise ValueError(
                f"{path}: a {mode} mask with values up to {largest}; class ids and the ignore "
                "label must be 0..255. Save the mask as an 8-bit PNG of class ids."
            )
        array = array.astype(np.uint8)
    return orient_array(array, header.orientation), mode, header


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
    """uint8 [H, W] class ids / ignore label of the mask at ``path``, upright.

    Masks over ``config.max_image_pixels`` are refused before decoding.
    """
    raw, _, _ = read_mask_raw(path, config.mask_encoding, config.max_image_pixels,
                              MAX_PIXELS_KEY)
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


def decode_image(path, channels, orientation=1):
    """uint8 [H, W, channels] upright tensor from a path tensor and its EXIF orientation.

    The pixel limit is not checked here: the pipeline reads every header first
    (:func:`read_header`).
    """
    def with_pillow():  # applies the file's orientation itself
        return _numpy_call(lambda p: read_image_array(p.decode(), channels, max_pixels=None),
                           path, [None, None, channels])

    def with_tf():
        # channels=0 then convert: not every TF decoder converts (BMP cannot give 1).
        image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
        image = orient_tensor(to_channels(image, channels), orientation)
        return tf.ensure_shape(image, [None, None, channels])

    is_tiff = tf.strings.regex_full_match(tf.strings.lower(path), _TIFF)
    return tf.cond(is_tiff, with_pillow, with_tf)


def make_mask_decoder(config):
    """A function ``(path, orientation=1)`` -> uint8 [H, W] upright tensor of class ids / ignore."""

    def with_pillow(path):  # applies the file's orientation itself
        return _numpy_call(lambda p: read_mask_array(p.decode(), config), path, [None, None])

    if config.mask_encoding == "palette":
        return lambda path, orientation=1: with_pillow(path)
    labels_of = _tf_mask_labels(config)

    def with_tf(path, orientation):
        return tf.ensure_shape(orient_tensor(labels_of(path), orientation), [None, None])

    def decode(path, orientation=1):
        is_tiff = tf.strings.regex_full_match(tf.strings.lower(path), _TIFF)
        return tf.cond(is_tiff, lambda: with_pillow(path), lambda: with_tf(path, orientation))

    return decode


def _tf_mask_labels(config):
    """``labels(path)`` -> uint8 [H, W] labels of a mask as stored, decoded by TensorFlow.

    For the ``ids``, ``rgb`` and ``binary`` encodings; the tables are built
    once, here.
    """
    if config.mask_encoding == "rgb":
        rows = color_table(config)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(_color_keys([c for c, _ in rows]), tf.int64),
                tf.constant([label for _, label in rows], tf.int64),
            ),
            default_value=config.ignore_label,
        )
        return lambda path: _rgb_labels(path, table)
    if config.mask_encoding == "binary":
        return _binary_labels
    lut = tf.constant(label_lut(config))
    return lambda path: tf.gather(lut, _id_values(path))


def _rgb_labels(path, table):
    """Each pixel's colour looked up in ``table`` (unknown colours: the ignore label)."""
    raw = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    rgb = tf.cast(raw, tf.int64)
    keys = (rgb[..., 0] * 65536) + (rgb[..., 1] * 256) + rgb[..., 2]
    return tf.cast(table.lookup(keys), tf.uint8)


def _binary_labels(path):
    """1 where the (grey) mask is 128 or brighter, 0 elsewhere."""
    raw = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
    gray = tf.cond(tf.shape(raw)[-1] >= 3,
                   lambda: tf.image.rgb_to_grayscale(raw[..., :3])[..., 0],
                   lambda: raw[..., 0])
    return tf.cast(gray >= 128, tf.uint8)


def _id_values(path):
    """int32 [H, W] values of an ids mask's first channel, 8- or 16-bit.

    A 16-bit PNG is read as its stored values (decode_image would scale them
    to 8 bits: id 1 would become 0); values above 255 are refused.
    """
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

    return tf.cond(wide, values16, values8)


def make_decoder(config):
    """A function ``(image_path, mask_path[, image_orientation, mask_orientation])``.

    It returns ``(image uint8 [H,W,C], mask uint8 [H,W])``, both turned
    upright by their EXIF orientations (from :func:`read_header`; 1 = none).
    A size mismatch between image and mask fails with both file names and
    orientations.
    """
    decode_mask = make_mask_decoder(config)
    channels = config.image_channels

    def decode(image_path, mask_path, image_orientation=1, mask_orientation=1):
        image = decode_image(image_path, channels, image_orientation)
        mask = decode_mask(mask_path, mask_orientation)
        check = tf.debugging.Assert(
            tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(mask))),
            ["Image and mask sizes differ after each is turned upright by its EXIF orientation "
             "(run `python -m fcn_tf.data verify`): image", image_path, tf.shape(image)[:2],
             "EXIF orientation", image_orientation, "mask", mask_path, tf.shape(mask),
             "EXIF orientation", mask_orientation],
        )
        with tf.control_dependencies([check]):
            return tf.identity(image), tf.identity(mask)

    return decode
