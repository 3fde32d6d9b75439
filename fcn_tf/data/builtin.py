"""The built-in "shapes" dataset: generated on first use, no download.

Four shape classes (circle, square, triangle, cross) plus background on
textured, noisy backgrounds. Shape and background colours are drawn from the
same distribution, so colour alone does not separate the classes. Each class
has its outline and a fill of its own (circles and crosses plain, squares
striped, triangles checkered, each in two tones of a random colour), so a
network can learn it from local texture and shape within a few CPU minutes.

It is written in the CamVid / SegNet layout (``train/`` + ``trainannot/``,
``val/`` + ``valannot/``, ``test/`` + ``testannot/``), 128x128 RGB PNG images
and single-channel PNG class-id masks. Generation is deterministic (one seeded
generator per image) and takes a few seconds.

Example:
    >>> root = ensure_builtin_dataset("/tmp/fcn_tf_builtin")  # doctest: +SKIP
"""

import os
import shutil

import numpy as np

from fcn_tf.utils.files import make_temp_dir

CLASS_NAMES = ("background", "circle", "square", "triangle", "cross")
VERSION = "shapes-v3"
SPLIT_SIZES = {"train": 240, "val": 60, "test": 60}
IMAGE_SIZE = 128
_MARKER = ".fcn_tf_builtin"
_SPLIT_SEEDS = {"train": 0, "val": 1_000_000, "test": 2_000_000}


def _random_color(rng):
    return rng.uniform(20, 235, size=3)


def _texture(rng, size, base, other):
    """Smooth noise blended between two colours, with faint stripes."""
    import cv2

    cells = rng.integers(2, 6)
    low = cv2.resize(rng.random((cells, cells)), (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size]
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(10, 30)
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    mix = np.clip(0.8 * low + 0.2 * stripes, 0, 1)[..., None]
    return base * (1 - mix) + other * mix


def _draw_shape(rng, kind, canvas, value, size):
    """Draw shape ``kind`` (1-4) filled with ``value`` on ``canvas`` (in place)."""
    import cv2

    cy, cx = rng.integers(16, size - 16, size=2)
    r = int(rng.integers(12, 28))
    if kind == 1:
        cv2.circle(canvas, (int(cx), int(cy)), r, value, -1)
    elif kind == 2:
        angle = rng.uniform(0, 90)
        box = cv2.boxPoints(((float(cx), float(cy)), (1.6 * r, 1.6 * r), angle))
        cv2.fillPoly(canvas, [np.round(box).astype(np.int32)], value)
    elif kind == 3:
        angle = rng.uniform(0, 2 * np.pi)
        pts = [
            (cx + r * np.cos(angle + k * 2 * np.pi / 3), cy + r * np.sin(angle + k * 2 * np.pi / 3))
            for k in range(3)
        ]
        cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], value)
    else:
        t = max(3, r // 3)
        cv2.rectangle(canvas, (int(cx - r), int(cy - t)), (int(cx + r), int(cy + t)), value, -1)
        cv2.rectangle(canvas, (int(cx - t), int(cy - r)), (int(cx + t), int(cy + r)), value, -1)


def _fill(rng, kind, color, size):
    """The fill of a ``kind`` shape: plain, stripes (square) or checkerboard (triangle)."""
    yy, xx = np.mgrid[0:size, 0:size]
    other = np.clip(color + rng.choice([-1, 1], size=3) * rng.uniform(50, 80, size=3), 0, 255)
    if kind == 2:
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5, 8)
        pattern = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0
    elif kind == 3:
        cell = int(rng.integers(3, 5))
        pattern = (yy // cell + xx // cell) % 2 == 0
    else:
        pattern = np.zeros((size, size), bool)
    shading = (yy - size / 2) * rng.uniform(-0.15, 0.15) + (xx - size / 2) * rng.uniform(-0.15, 0.15)
    return np.where(pattern[..., None], other, color) + shading[..., None]


def render_example(seed, size=IMAGE_SIZE):
    """One (image uint8 [H,W,3] RGB, mask uint8 [H,W]) pair from ``seed``."""
    import cv2

    rng = np.random.default_rng(seed)
    base = _random_color(rng)
    image = _texture(rng, size, base, np.clip(base + rng.uniform(-50, 50, size=3), 0, 255))
    mask = np.zeros((size, size), np.uint8)
    background_mean = image.mean(axis=(0, 1))
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(1, len(CLASS_NAMES)))
        color = _random_color(rng)
        while np.abs(color - background_mean).mean() < 60:
            color = _random_color(rng)
        shape = np.zeros((size, size), np.uint8)
        _draw_shape(rng, kind, shape, 1, size)
        inside = shape.astype(bool)
        image[inside] = _fill(rng, kind, color, size)[inside]
        mask[inside] = kind
    image = cv2.GaussianBlur(image, (3, 3), 0.6) + rng.normal(0, 5, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask


def _write(root):
    import cv2

    for split, count in SPLIT_SIZES.items():
        os.makedirs(os.path.join(root, split))
        os.makedirs(os.path.join(root, split + "annot"))
        for i in range(count):
            image, mask = render_example(_SPLIT_SEEDS[split] + i)
            name = f"{split}_{i:04d}.png"
            cv2.imwrite(os.path.join(root, split, name), image[..., ::-1])
            cv2.imwrite(os.path.join(root, split + "annot", name), mask)
    with open(os.path.join(root, _MARKER), "w") as f:
        f.write(VERSION + "\n")


def is_builtin_dataset(root):
    """True when ``root`` holds a complete built-in dataset of this version."""
    marker = os.path.join(root, _MARKER)
    if not os.path.isfile(marker):
        return False
    with open(marker) as f:
        return f.read().strip() == VERSION


def ensure_builtin_dataset(root):
    """Generate the built-in dataset into ``root`` unless it is already there.

    Safe against concurrent callers: the data is written to a temporary folder
    next to ``root`` and renamed into place. Returns ``root``.
    """
    root = os.path.abspath(os.fspath(root))
    if is_builtin_dataset(root):
        return root
    if os.path.isdir(root) and os.listdir(root):
        raise FileExistsError(
            f"data.root: {root!r} exists but does not hold the built-in dataset "
            f"({VERSION}). Point data.root at an empty or missing folder, or delete it "
            "so it can be generated again."
        )
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    staging = make_temp_dir(parent, prefix=".builtin-")
    try:
        _write(staging)
        if os.path.isdir(root):
            os.rmdir(root)
        os.rename(staging, root)
    except OSError:
        if not is_builtin_dataset(root):  # not a lost race with another process
            raise
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return root
