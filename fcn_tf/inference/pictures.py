"""What predict writes for an image: class ids as a palette PNG, the colour mask over the image.

Example:
    >>> save_class_png("out/a.png", classes, colors)                        # doctest: +SKIP
    >>> save_overlay("out/a_overlay.png", rgb, classes, names, colors)      # doctest: +SKIP
"""

import cv2
import numpy as np

from fcn_tf.data.palette import class_ids_image
from fcn_tf.visualize import overlay


def save_class_png(path, classes, colors):
    """A palette PNG: pixel values are class ids, the palette the class colours.

    (:func:`fcn_tf.data.palette.class_ids_image`: beyond 256 classes, a
    16-bit grayscale PNG of the ids.)
    """
    class_ids_image(classes, colors).save(path)


def save_overlay(path, rgb, classes, class_names, colors, alpha=0.5):
    """The colour mask over the image, with a legend strip of the classes present."""
    picture = np.empty_like(rgb)
    for top in range(0, rgb.shape[0], 256):  # row blocks: no full-size float copies
        rows = slice(top, top + 256)
        picture[rows] = overlay(rgb[rows], classes[rows], colors, alpha=alpha)
    present = [int(c) for c in np.unique(classes) if c < len(class_names)]
    if present:
        picture = np.concatenate([picture, _legend(present, picture.shape[1], class_names,
                                                   colors)])
    if not cv2.imwrite(path, picture[..., ::-1]):
        raise OSError(f"could not write {path} (OpenCV's PNG writer refused it).")


def _legend(present, width, class_names, colors):
    """A white strip ``width`` wide: one row per class of ``present``, its colour and name."""
    row = max(14, min(28, width // 25))
    legend = np.full((row * len(present) + 4, width, 3), 255, np.uint8)
    for index, c in enumerate(present):
        y = 2 + index * row
        legend[y + 2:y + row - 2, 4:4 + row - 4] = colors[c]
        cv2.putText(legend, class_names[c], (row + 4, y + row - 5), cv2.FONT_HERSHEY_SIMPLEX,
                    row / 35.0, (0, 0, 0), 1, cv2.LINE_AA)
    return legend
