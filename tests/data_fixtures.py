"""Tiny datasets written to a temp dir, in every layout and mask encoding."""

import json
import os

import numpy as np
from PIL import Image

NUM_CLASSES = 3
IGNORE = 255
SIZE = (24, 32)  # height, width
COLORS = [(0, 0, 0), (200, 30, 30), (30, 200, 30)]
LAYOUTS = ("voc", "voc_aug", "folders", "single_folder", "camvid")
ENCODINGS = ("ids", "palette", "rgb", "binary")


def labels(seed, size=SIZE, num_classes=NUM_CLASSES, ignore=True):
    """Blocky class ids with a few ignore pixels."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, num_classes, (size[0] // 4 + 1, size[1] // 4 + 1))
    out = np.kron(blocks, np.ones((4, 4), np.int64))[: size[0], : size[1]].astype(np.uint8)
    if ignore:
        out[0, :3] = IGNORE
    return out


def encode_mask(ids, encoding):
    """A PIL image storing class ids ``ids`` with ``encoding``."""
    if encoding == "ids":
        return Image.fromarray(ids, "L")
    if encoding == "palette":
        image = Image.fromarray(ids, "P")
        flat = [v for c in COLORS for v in c] + [224, 224, 192] * (256 - len(COLORS))
        image.putpalette(flat)
        return image
    if encoding == "rgb":
        rgb = np.zeros(ids.shape + (3,), np.uint8)
        for label, color in enumerate(COLORS):
            rgb[ids == label] = color
        rgb[ids == IGNORE] = (255, 255, 255)  # mapped to ignore via color_map
        return Image.fromarray(rgb, "RGB")
    if encoding == "binary":
        return Image.fromarray(np.where(ids == 1, 255, 0).astype(np.uint8), "L")
    raise ValueError(encoding)


def expected_labels(ids, encoding):
    """Class ids the pipeline must produce for ``ids`` stored with ``encoding``."""
    if encoding == "binary":
        return (ids == 1).astype(np.uint8)
    return ids


def image_for(seed, size=SIZE, channels=3):
    rng = np.random.default_rng(1000 + seed)
    image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    return image if channels == 3 else image[..., :1]


def save_image(array, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(array, Image.Image):
        array.save(path)
        return
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    Image.fromarray(array).save(path)


def _paths(root, layout, split, stem, image_ext):
    """(image path, mask path) of ``stem`` in ``layout``."""
    if layout in ("voc", "voc_aug"):
        masks = "SegmentationClass" if layout == "voc" else "SegmentationClassAug"
        return (os.path.join(root, "JPEGImages", stem + image_ext),
                os.path.join(root, masks, stem + ".png"))
    if layout == "folders":
        return (os.path.join(root, "images", split, stem + image_ext),
                os.path.join(root, "masks", split, stem + ".png"))
    if layout == "single_folder":
        return (os.path.join(root, split, stem + image_ext),
                os.path.join(root, split, stem + "_mask.png"))
    return (os.path.join(root, split, stem + image_ext),
            os.path.join(root, split + "annot", stem + ".png"))


def data_section(layout, encoding, root="ds", channels=3):
    """The "data" config section for a fixture dataset."""
    data = {"format": layout, "root": root, "mask_encoding": encoding,
            "image_channels": channels, "crop_size": [16, 16]}
    if encoding == "binary":
        return data
    data["num_classes"] = NUM_CLASSES
    if encoding == "rgb":
        data["color_map"] = [{"color": list(c), "label": i} for i, c in enumerate(COLORS)]
        data["color_map"].append({"color": [255, 255, 255], "label": IGNORE})
    return data


def make_dataset(base, layout="camvid", encoding="ids", *, counts=None, image_ext=".png",
                 channels=3, image_fn=None, label_fn=None):
    """Write a fixture dataset under ``base/ds``; returns (config path, {split: [(stem, image, ids)]}).

    The config file ``base/config.json`` has a "data" section and a "model"
    section (which the data module must ignore).
    """
    counts = counts or {"train": 6, "val": 3}
    root = os.path.join(base, "ds")
    image_fn = image_fn or (lambda seed: image_for(seed, channels=channels))
    label_fn = label_fn or labels
    written = {}
    for split_index, (split, count) in enumerate(counts.items()):
        written[split] = []
        for i in range(count):
            seed = 100 * split_index + i
            stem = f"{split}_{i:03d}"
            image, ids = image_fn(seed), label_fn(seed)
            if encoding == "binary":
                ids = np.where(ids == IGNORE, 0, ids)
            image_path, mask_path = _paths(root, layout, split, stem, image_ext)
            save_image(image, image_path)
            save_image(encode_mask(ids, encoding), mask_path)
            written[split].append((stem, image, expected_labels(ids, encoding)))
        if layout in ("voc", "voc_aug"):
            name = f"{split}_aug" if layout == "voc_aug" and split == "train" else split
            lists = os.path.join(root, "ImageSets", "Segmentation")
            os.makedirs(lists, exist_ok=True)
            with open(os.path.join(lists, name + ".txt"), "w") as f:
                f.write("".join(stem + "\n" for stem, _, _ in written[split]))
    config = os.path.join(base, "config.json")
    with open(config, "w") as f:
        json.dump({"model": {"name": "unet"}, "data": data_section(layout, encoding, channels=channels)}, f)
    return config, written
