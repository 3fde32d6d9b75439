"""Input-pipeline benchmark: images/s of decode, training and evaluation pipelines.

``python -m fcn_tf.data bench [--data CONFIG_OR_PATH ...]`` measures, on the
built-in dataset and on every ``--data`` (a config file, or a dataset folder in
the CamVid or VOC layout), in one process:

- ``decode``: read + decode + centre crop/pad to the crop size + normalise + batch;
- ``train``: the training pipeline with full augmentation (scale, crop with
  padding, flip, brightness, contrast, saturation, hue) at ``--crop``
  (512x512 by default); ``train+rot`` adds a random rotation of up to 10 degrees;
- ``eval``: the full-resolution evaluation pipeline;
- ``model``: images/s one training step of the smallest shipped model (a
  small U-Net) consumes at the same crop size.

Targets (from the data issue): ``train <= 1.3 x`` the cost of ``decode``
(augmentation adds at most 30%), and ``train >= 5 x model``. Caching is off so
that every epoch decodes. Figures are also given per CPU core. Each figure is
the best of ``--rounds`` interleaved measurements, which damps the noise of
other processes sharing the CPU.
"""

import argparse
import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from fcn_tf.data.config import AugmentConfig, DataConfig, load_data_config
from fcn_tf.data.decode import make_decoder
from fcn_tf.data.formats import split_files, split_names
from fcn_tf.data.pipeline import build_dataset
from fcn_tf.models import build_model
from fcn_tf.preprocessing import Preprocessing

# Scale, crop with padding, flip and every photometric jitter; "train+rot" adds rotation.
FULL_AUGMENT = AugmentConfig(scale=(0.5, 2.0), flip=True, rotation=0.0,
                             brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02)
ROTATION_DEGREES = 10.0


def cpu_cores():
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def config_from_argument(value):
    """A DataConfig from a config file, a dataset folder, or ``builtin``."""
    if value == "builtin":
        return DataConfig()
    if os.path.isfile(value):
        return load_data_config(value)
    if os.path.isdir(os.path.join(value, "trainannot")):
        fmt = "camvid"
    elif os.path.isdir(os.path.join(value, "JPEGImages")):
        fmt = "voc"
    else:
        raise SystemExit(
            f"--data {value!r}: expected a config file or a dataset folder in the CamVid "
            "(train/ + trainannot/) or VOC (JPEGImages/) layout. Write a config with a "
            "\"data\" section for other layouts."
        )
    # Throughput does not depend on class ids: treat every raw value as a class.
    return DataConfig(format=fmt, root=os.path.abspath(value), num_classes=255)


def images_per_second(dataset, seconds):
    """Images/s over about ``seconds`` of iteration, after one warm-up batch."""
    iterator = iter(dataset.repeat())
    next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images, _ = next(iterator)
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def decode_only_dataset(config, split, batch_size, crop_size, preprocessing):
    """Decode + centre crop/pad + normalise + batch: the floor a pipeline can reach."""
    files = split_files(config, split)
    decode = make_decoder(config)

    def to_batchable(image, mask):
        image = tf.image.resize_with_crop_or_pad(tf.cast(image, tf.float32), *crop_size)
        mask = tf.image.resize_with_crop_or_pad(mask[..., None], *crop_size)[..., 0]
        return preprocessing.apply(image), tf.cast(mask, tf.int32)

    images, masks = zip(*files)
    ds = tf.data.Dataset.from_tensor_slices((list(images), list(masks)))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(to_batchable, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def bench_pipelines(config, *, crop_size, batch_size, seconds, rounds=1):
    """{"decode", "train", "train+rot", "eval"}: best images/s over ``rounds`` (cache off)."""
    config = dataclasses.replace(config, crop_size=tuple(crop_size), cache="off",
                                 augment=FULL_AUGMENT, deterministic=False)
    rotated = dataclasses.replace(config, augment=dataclasses.replace(
        FULL_AUGMENT, rotation=ROTATION_DEGREES))
    preprocessing = Preprocessing.preset("unit", config.image_channels)
    names = split_names(config)
    train_split = "train" if "train" in names else names[0]
    eval_split = "val" if "val" in names else train_split
    kwargs = dict(batch_size=batch_size, preprocessing=preprocessing)
    pipelines = {
        "decode": decode_only_dataset(config, train_split, batch_size, crop_size, preprocessing),
        "train": build_dataset(config, train_split, training=True, **kwargs),
        "train+rot": build_dataset(rotated, train_split, training=True, **kwargs),
        "eval": build_dataset(config, eval_split, training=False, **kwargs),
    }
    best = dict.fromkeys(pipelines, 0.0)
    for _ in range(rounds):
        for name, dataset in pipelines.items():
            best[name] = max(best[name], images_per_second(dataset, seconds))
    return best


def bench_model(num_classes, *, crop_size, batch_size, channels=3, base_filters=16, depth=4, steps=5):
    """Images/s consumed by training steps of a small U-Net; returns (images/s, description)."""
    model = build_model("unet", num_classes, base_filters=base_filters, depth=depth,
                        input_channels=channels)
    name = f"fcn_tf U-Net base_filters={base_filters} depth={depth}"
    name += f", {model.count_params() / 1e6:.2f}M params"
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255))
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *crop_size, channels), dtype=np.float32)
    y = rng.integers(0, num_classes, (batch_size, *crop_size)).astype(np.int32)
    model.train_on_batch(x, y)  # build and compile the step
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch_size / (time.perf_counter() - start), name


def format_results(name, results, cores):
    lines = [f"{name}", f"  {'pipeline':<10}{'images/s':>10}{'per core':>10}"]
    for key, value in results.items():
        lines.append(f"  {key:<10}{value:>10.1f}{value / cores:>10.1f}")
    for key in ("train", "train+rot"):
        overhead = results["decode"] / results[key] - 1
        lines.append(f"  {key}: augmentation cost over decode alone {100 * overhead:+.0f}% "
                     "(target <= +30%)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.data bench",
                                     description="Measure input-pipeline throughput (images/s).")
    parser.add_argument("--data", action="append", default=[],
                        help="config file or dataset folder (repeatable); the built-in dataset is always run")
    parser.add_argument("--crop", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best is kept")
    parser.add_argument("--base-filters", type=int, default=16, help="U-Net width for the model figure")
    parser.add_argument("--depth", type=int, default=4, help="U-Net depth for the model figure")
    parser.add_argument("--no-model", action="store_true", help="skip the model consumption figure")
    args = parser.parse_args(argv)
    cores = cpu_cores()
    print(f"CPU cores: {cores}; crop {args.crop[0]}x{args.crop[1]}, batch {args.batch_size}, "
          f"cache off, best of {args.rounds} x {args.seconds:g} s; load average "
          f"{os.getloadavg()[0]:.2f} at start")
    slowest = None
    for value in ["builtin", *args.data]:
        config = config_from_argument(value)
        results = bench_pipelines(config, crop_size=args.crop, batch_size=args.batch_size,
                                  seconds=args.seconds, rounds=args.rounds)
        print(format_results(f"{value} ({config.format}, {config.root})", results, cores))
        slowest = results["train"] if slowest is None else min(slowest, results["train"])
    if not args.no_model:
        rate, name = bench_model(5, crop_size=tuple(args.crop), batch_size=args.batch_size,
                                 base_filters=args.base_filters, depth=args.depth)
        print(f"model: {name}: {rate:.2f} images/s per training step ({rate / cores:.2f} per core)")
        print(f"slowest training pipeline / model consumption: {slowest / rate:.1f}x (target >= 5x)")
    return 0
