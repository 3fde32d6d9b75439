"""The images a model segments: which files a folder holds, read upright, in the model's channels.

Example:
    >>> rgb = read_rgb("photo.jpg")                    # doctest: +SKIP
    >>> pixels = to_model_channels(rgb, channels=1)    # doctest: +SKIP
"""

import os

from fcn_tf.data.config import DEFAULT_MAX_IMAGE_PIXELS
from fcn_tf.data.decode import read_image_array
from fcn_tf.inference.writing import read_manifest
from fcn_tf.preprocessing import rgb_to_luma

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def list_inputs(inputs, made=None):
    """Image paths from files and folders (folders: their images, sorted, not recursive).

    In a folder, sub-folders are passed over, and so are the files an earlier
    predict wrote there (listed in its manifest), which are appended to
    ``made`` when given. A file given by name is kept as it is, so that a
    pipe, a broken link or a link loop is reported when it is read.
    """
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += _folder_images(item, made)
        elif os.path.lexists(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"INPUT {item}: no such file or folder.")
    return paths


def _folder_images(folder, made):
    """The images of ``folder``, less those an earlier predict wrote (added to ``made``)."""
    outputs = read_manifest(folder)
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.lower().endswith(IMAGE_SUFFIXES) or os.path.isdir(path):
            continue
        if name in outputs:
            if made is not None:
                made.append(path)
            continue
        found.append(path)
    if not found:
        raise FileNotFoundError(
            f"INPUT {folder}: a folder without images (looked for "
            f"{', '.join(IMAGE_SUFFIXES)}; files predict wrote there are not inputs). "
            "Give image files or a folder holding some."
        )
    return found


def read_rgb(path, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """uint8 ``[H, W, 3]`` upright RGB of an image file (Pillow: PNG, JPEG, TIFF, ...).

    EXIF orientation is applied, as in training. An image over
    ``max_image_pixels`` is refused from its header
    (:class:`~fcn_tf.data.decode.ImageTooLargeError`), before decoding.
    """
    return read_image_array(path, 3, max_image_pixels, "max_image_pixels")


def to_model_channels(rgb, channels):
    """RGB to the model's channels (grayscale: luma, as training read it)."""
    return rgb if channels == 3 else rgb_to_luma(rgb)
