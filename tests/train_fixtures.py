"""A tiny dataset and config for training tests (written to a temp folder)."""

import json
import os

import cv2
import numpy as np


def write_tiny_dataset(root, train=8, val=4, size=32, seed=0):
    """CamVid layout, 3 classes: squares (1) and bars (2) on noise, size x size."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        os.makedirs(os.path.join(root, split + "annot"), exist_ok=True)
        for i in range(count):
            image = rng.normal(90, 20, size=(size, size, 3))
            mask = np.zeros((size, size), np.uint8)
            y, x = rng.integers(2, size // 2, size=2)
            image[y : y + 8, x : x + 8] = 200
            mask[y : y + 8, x : x + 8] = 1
            image[size - 6 : size - 3, 2 : size - 2] = 30
            mask[size - 6 : size - 3, 2 : size - 2] = 2
            name = f"{i:03d}.png"
            cv2.imwrite(os.path.join(root, split, name), np.clip(image, 0, 255).astype(np.uint8))
            cv2.imwrite(os.path.join(root, split + "annot", name), mask)
    return root


def tiny_config(tmp_path, **sections):
    """A config dict for a 2-epoch tiny U-Net run on :func:`write_tiny_dataset`."""
    data_root = write_tiny_dataset(str(tmp_path / "data"))
    config = {
        "model": {"name": "unet", "options": {"base_filters": 4, "depth": 2}},
        "data": {"format": "camvid", "root": data_root, "num_classes": 3, "crop_size": [32, 32],
                 "augment": {"enabled": False}, "deterministic": True},
        "train": {"epochs": 2, "batch_size": 4, "learning_rate": 0.01, "jit_compile": False},
        "output": {"dir": str(tmp_path / "runs"), "name": "tiny", "tensorboard": False,
                   "sample_images": 2},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


def write_config(tmp_path, config, name="config.json"):
    path = tmp_path / name
    path.write_text("// test config\n" + json.dumps(config, indent=1))
    return path
