"""Class names and colours that travel with a dataset.

The VOC colour map is the bit-interleaving palette of the PASCAL VOC devkit
(``VOCdevkit/VOCcode/VOClabelcolormap.m``): class 0 is black, class 1 dark red,
and so on. Its first 21 entries colour the VOC classes; the same function also
gives distinct colours for any other class count.

:func:`class_ids_image` is the one picture of a class-id map that predict
writes and the server sends: a palette PNG whose pixel values are the class
ids and whose palette is the class colours.

Example:
    >>> voc_colormap(3)
    [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    >>> class_ids_image([[0, 2]], voc_colormap(3)).getpixel((1, 0))
    2
"""

import numpy as np
from PIL import Image

VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus",
    "car", "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike",
    "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def voc_colormap(n=256):
    """The first ``n`` colours of the PASCAL VOC palette, as RGB tuples."""
    colors = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return colors


def distinct_colors(n):
    """``n`` well-separated RGB colours (golden-ratio hue walk), class 0 black."""
    import colorsys

    colors = [(0, 0, 0)]
    hue = 0.0
    for i in range(1, n):
        hue = (hue + 0.618033988749895) % 1.0
        value = 0.95 if i % 2 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, value)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors[:n]


def default_colors(num_classes):
    """The VOC palette for 21 classes, a distinct palette otherwise."""
    if num_classes == len(VOC_CLASS_NAMES):
        return voc_colormap(num_classes)
    return distinct_colors(num_classes)


def default_class_names(num_classes):
    """VOC names for 21 classes, ``class_0 .. class_{n-1}`` otherwise."""
    if num_classes == len(VOC_CLASS_NAMES):
        return list(VOC_CLASS_NAMES)
    return [f"class_{i}" for i in range(num_classes)]


def class_ids_image(class_ids, colors):
    """A PIL image of a ``[H, W]`` class-id map, to save as PNG.

    Up to 256 classes: a palette image (pixel value = class id, palette = the
    class colours, the rest of the 256 entries black). More classes: a
    16-bit grayscale image of the ids.
    """
    if len(colors) > 256:
        return Image.fromarray(np.asarray(class_ids, np.uint16))
    image = Image.fromarray(np.asarray(class_ids, np.uint8), mode="P")
    table = np.zeros((256, 3), np.uint8)
    table[: len(colors)] = np.asarray(colors, np.uint8)
    image.putpalette(table.reshape(-1).tolist())
    return image
