"""tf.data pipelines: file list -> decode -> (augment) -> normalise -> batches.

Before anything is decoded, every file's header is read: a file over
``max_image_pixels``, an unreadable header or an image/mask size mismatch
(after EXIF orientation) is refused naming the file, a split whose masks hold
only the ignore label is refused (:func:`~fcn_tf.data.verify.require_labels`),
masks in a lossy format draw a warning, and each file's EXIF orientation is
handed to the decoder, which turns images and masks upright.

Training: shuffle the file list (seeded), decode in parallel, optionally cache
the decoded pairs, augment each pair with its own stateless seed, normalise
with the backbone's :class:`~fcn_tf.preprocessing.Preprocessing`, batch with
a fixed crop size and prefetch.

Evaluation: decode, normalise, and pad each example to a multiple of
``eval_pad_multiple`` (image with 0 = the mean pixel after normalisation, mask
with the ignore label); padded batching keeps every label at full resolution.

Example:
    >>> from fcn_tf.preprocessing import Preprocessing
    >>> ds = build_dataset(DataConfig(), "train", training=True, batch_size=8,
    ...                    preprocessing=Preprocessing.preset("unit"))  # doctest: +SKIP
"""

import dataclasses
import warnings

import tensorflow as tf

from fcn_tf.data.augment import augment_example
from fcn_tf.data.batch_mix import cut_mix
from fcn_tf.data.decode import make_decoder
from fcn_tf.data.formats import DatasetError, split_files
from fcn_tf.data.verify import header_issues, require_labels

AUTOTUNE = tf.data.AUTOTUNE
_CUT_MIX_STREAM = 0x6D6978  # folds a batch's seed for cut_mix


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What travels with a dataset to logs, legends and exports."""

    num_classes: int
    class_names: tuple
    colors: tuple  # one (r, g, b) per class
    ignore_label: int
    image_channels: int

    def to_dict(self):
        return {
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "colors": [list(c) for c in self.colors],
            "ignore_label": self.ignore_label,
            "image_channels": self.image_channels,
        }


def dataset_info(config):
    """The :class:`DatasetInfo` of a :class:`DataConfig`."""
    return DatasetInfo(
        num_classes=config.num_classes,
        class_names=tuple(config.class_names),
        colors=tuple(tuple(int(v) for v in c) for c in config.colors),
        ignore_label=config.ignore_label,
        image_channels=config.image_channels,
    )


def _decoded_megabytes(config, headers):
    """Estimate of the decoded size of a split from its first image's header."""
    height, width = headers[0][0].size
    return len(headers) * height * width * (config.image_channels + 1) / 2**20


def should_cache(config, headers):
    """Whether the decoded split is kept in memory (``cache``); ``headers`` of :func:`read_headers`."""
    if config.cache == "memory":
        return True
    if config.cache == "off" or not headers:
        return False
    return _decoded_megabytes(config, headers) <= config.cache_limit_mb


def read_headers(config, split, files):
    """``[(image header, mask header)]`` of ``files``, read without decoding a pixel.

    Raises :class:`DatasetError` naming the files that cannot be read, are
    over ``max_image_pixels`` or whose image and mask sizes differ (after
    EXIF orientation). Masks in a lossy format (JPEG) draw a warning:
    ``check_dataset`` refuses them before training, the pipeline alone only warns.
    """
    headers, refused, lossy = [], [], []
    for pair in files:
        found, issues = header_issues(pair, config)
        for kind, detail, path in issues:
            if kind == "lossy_mask":
                lossy.append((detail, path))
            else:
                refused.append(f"{path}: {detail}")
        headers.append(found)
    if refused:
        shown = "\n  ".join(refused[:10])
        more = f"\n  ... and {len(refused) - 10} more" if len(refused) > 10 else ""
        raise DatasetError(
            f"Split {split!r}: {len(refused)} file problem(s) found in the headers, before "
            f"decoding:\n  {shown}{more}\nRun `python -m fcn_tf.data verify CONFIG` for a full "
            "report.")
    if lossy:
        warnings.warn(
            f"Split {split!r}: {len(lossy)} mask(s) are stored in a lossy format, e.g. "
            f"{lossy[0][1]}: {lossy[0][0]}.", stacklevel=3)
    return headers


def _shard(files, input_context, split):
    if input_context is None or input_context.num_input_pipelines == 1:
        return files
    shard = files[input_context.input_pipeline_id :: input_context.num_input_pipelines]
    if not shard:
        raise DatasetError(
            f"Split {split!r} has {len(files)} files, fewer than the "
            f"{input_context.num_input_pipelines} input pipelines; each worker needs "
            "at least one file. Use fewer workers or more data."
        )
    return shard


def _normaliser(preprocessing):
    """:meth:`Preprocessing.apply <fcn_tf.preprocessing.Preprocessing.apply>` as a function."""
    return preprocessing.apply


def _pad_to_multiple(image, mask, multiple, ignore_label):
    shape = tf.shape(mask)
    target = (shape + multiple - 1) // multiple * multiple
    pad_h, pad_w = target[0] - shape[0], target[1] - shape[1]
    image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
    mask = tf.pad(mask, [[0, pad_h], [0, pad_w]], constant_values=ignore_label)
    return image, mask


def _prepare(config, split, training, batch_size, preprocessing, input_context):
    """Files (with headers), per-replica batch size, preprocessing and cache choice."""
    files = split_files(config, split)
    require_labels(config, split, files)
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    files = _shard(files, input_context, split)
    files = list(zip(files, read_headers(config, split, files)))
    if training and len(files) < batch_size:
        raise DatasetError(
            f"Split {split!r} has {len(files)} examples, fewer than the batch size "
            f"{batch_size}, so no full training batch can be made. Lower the batch size."
        )
    preprocessing = preprocessing.for_channels(config.image_channels)
    return files, batch_size, preprocessing, should_cache(config, [h for _, h in files])


def _decoded(config, files, *, cache, shuffle_seed=None, ordered=None):
    """Decoded, upright (image, mask) pairs, kept in memory when ``cache``.

    ``files`` is ``[((image path, mask path), (image header, mask header))]``.
    The file list is shuffled first when a seed is given (uncached training).
    """
    paths, headers = zip(*files)
    images, masks = zip(*paths)
    orientations = [[h.orientation for h in pair] for pair in headers]
    ds = tf.data.Dataset.from_tensor_slices((
        list(images), list(masks), [o[0] for o in orientations], [o[1] for o in orientations]))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.map(make_decoder(config), num_parallel_calls=AUTOTUNE, deterministic=ordered)
    return ds.cache() if cache else ds


def _training_batches(ds, config, seed, batch_size, preprocessing, count, cached):
    """Augmented, fixed-size batches from decoded pairs (shuffled here when cached)."""
    if cached:
        ds = ds.shuffle(min(config.shuffle_buffer, count), seed=seed,
                        reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds)

    def train_map(pair, example_seed):
        image, mask = augment_example(
            pair[0], pair[1], example_seed,
            augment=config.augment, crop_size=config.crop_size,
            preprocessing=preprocessing, ignore_label=config.ignore_label,
        )
        return image, tf.cast(mask, tf.int32)

    ds = ds.map(train_map, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    if config.augment.enabled and config.augment.cutmix > 0:
        batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

        def mix(batch, batch_seed):
            # A fold of the stream the examples' seeds come from: its own draws.
            batch_seed = tf.random.experimental.stateless_fold_in(batch_seed, _CUT_MIX_STREAM)
            return cut_mix(batch[0], batch[1], batch_seed, config.augment.cutmix)

        ds = tf.data.Dataset.zip(ds, batch_seeds).map(mix, num_parallel_calls=AUTOTUNE)
    return ds


def _finish(ds, config, input_context):
    options = tf.data.Options()
    options.deterministic = bool(config.deterministic)
    if input_context is not None:  # already sharded by file above
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(AUTOTUNE)


def build_dataset(
    config,
    split,
    *,
    training,
    batch_size,
    preprocessing,
    seed=None,
    input_context=None,
):
    """A ``tf.data.Dataset`` of ``(image, mask)`` batches for ``split``.

    Args:
        config: a :class:`~fcn_tf.data.config.DataConfig`.
        split: split name, e.g. ``"train"`` or ``"val"``.
        training: True for shuffled, augmented, fixed-size crops; False for
            full-resolution evaluation batches.
        batch_size: global batch size (divided per replica with ``input_context``).
        preprocessing: the backbone's :class:`~fcn_tf.preprocessing.Preprocessing`.
        seed: overrides ``config.seed``.
        input_context: a ``tf.distribute.InputContext``: per-replica batch
            size, and files sharded across input pipelines (multi-worker).

    Evaluation batches always keep the sorted file order; training batches
    keep a reproducible order only with ``config.deterministic``.

    Returns:
        Batches of ``image`` float32 ``[B, H, W, C]`` (normalised) and ``mask``
        int32 ``[B, H, W]`` (class ids or ``config.ignore_label``). Training
        batches are ``config.crop_size`` and drop the last partial batch.
    """
    seed = config.seed if seed is None else seed
    files, batch_size, preprocessing, cache = _prepare(
        config, split, training, batch_size, preprocessing, input_context)
    if training:
        ds = _decoded(config, files, cache=cache, shuffle_seed=None if cache else seed)
        ds = _training_batches(ds, config, seed, batch_size, preprocessing, len(files), cache)
    else:
        normalise = _normaliser(preprocessing)
        # Evaluation keeps file order (predictions are matched to files).
        ds = _decoded(config, files, cache=cache, ordered=True)

        def eval_map(image, mask):
            image = normalise(image)
            return _pad_to_multiple(image, tf.cast(mask, tf.int32),
                                    config.eval_pad_multiple, config.ignore_label)

        ds = ds.map(eval_map, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.padded_batch(
            batch_size,
            padding_values=(tf.constant(0.0), tf.constant(config.ignore_label, tf.int32)),
        )
    return _finish(ds, config, input_context)


def build_training_epochs(config, split, *, batch_size, preprocessing, seeds, steps,
                          input_context=None):
    """Several training epochs, one after another, that decode the split once.

    Epoch ``i`` is ``build_dataset(config, split, training=True, seed=seeds[i])``
    repeated if needed and cut to ``steps`` batches: the same batches as
    building each epoch on its own. When the split is cached (``cache``), the
    decoded pairs are kept in memory once for all epochs; separate
    ``build_dataset`` pipelines would each keep their own copy (40 epochs of
    CamVid's 367 images held 10 GB).
    """
    files, batch_size, preprocessing, cache = _prepare(
        config, split, True, batch_size, preprocessing, input_context)
    shared = _decoded(config, files, cache=True) if cache else None
    chain = None
    for seed in seeds:
        source = shared if cache else _decoded(config, files, cache=False, shuffle_seed=seed)
        ds = _training_batches(source, config, seed, batch_size, preprocessing, len(files), cache)
        ds = ds.repeat().take(steps)
        chain = ds if chain is None else chain.concatenate(ds)
    return _finish(chain, config, input_context)
