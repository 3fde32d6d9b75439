"""Dataset splits: turn a :class:`DataConfig` split into (image, mask) file pairs.

A split's folders are ``data.splits``' or its format's defaults
(:data:`fcn_tf.data.format_table.DATASET_FORMATS`), and its files are
listed by the format's lister (:mod:`fcn_tf.data.listing`). Matching is by
file stem (``0001.jpg`` <-> ``0001.png``) or, for the VOC formats, by the
stems listed in a split file. Problems are collected, not printed:
:class:`SplitListing` keeps the images without masks, the masks without
images and the listed stems whose files are missing, each with its path;
:func:`split_files` raises them.
"""

import os

from fcn_tf.data.config import SplitConfig
from fcn_tf.data.format_table import DATASET_FORMATS
from fcn_tf.data.listing import DatasetError, SplitListing

# DatasetError and SplitListing live in fcn_tf.data.listing; they are named here too.
__all__ = ["DatasetError", "SplitListing", "list_split", "listing_problems", "split_files",
           "split_names", "split_paths"]


def _default_folders(config, split):
    """The format's :class:`SplitConfig` of ``split``, paths relative to ``data.root``."""
    return SplitConfig(*DATASET_FORMATS[config.format].folders(split))


def _root(config):
    prepare = DATASET_FORMATS[config.format].prepare
    if prepare is not None:
        prepare(config.root)
    if not os.path.isdir(config.root):
        raise DatasetError(
            f"data.root: folder {config.root!r} does not exist (format "
            f"{config.format!r}). Fix the path; relative paths are resolved "
            "against the config file's folder."
        )
    return config.root


DEFAULT_SPLITS = ("train", "val", "test")


def split_names(config):
    """``data.splits`` keys, then the format's default splits whose folders exist.

    ``data.splits`` adds to and overrides the format's default splits, so a
    config that only says ``"train": {"include": ["val"]}`` still has ``test``.
    """
    names = list(config.splits or ())
    root = _root(config)
    for split in DEFAULT_SPLITS:
        if split in names:
            continue
        paths = _default_folders(config, split)
        probe = paths.list if paths.list else paths.images
        if os.path.exists(os.path.join(root, probe)):
            names.append(split)
    return names


def split_paths(config, split):
    """The split's :class:`SplitConfig` with absolute paths."""
    root = _root(config)
    given = (config.splits or {}).get(split)
    if given is None:
        if split not in DEFAULT_SPLITS:
            raise DatasetError(
                f"Split {split!r} is neither in data.splits nor one of the format's splits "
                f"({', '.join(DEFAULT_SPLITS)}). Available: {', '.join(split_names(config))}. "
                "Add it under data.splits.")
        given = SplitConfig()
    default = _default_folders(config, split)

    def resolve(name):
        value = getattr(given, name) or getattr(default, name)
        return os.path.normpath(os.path.join(root, value)) if value else None

    return SplitConfig(resolve("images"), resolve("masks"), resolve("list"), given.stems,
                       given.prefixes, given.exclude_prefixes, given.include)


def list_split(config, split):
    """All files of ``split`` as a :class:`SplitListing` (nothing is decoded).

    A split's ``include`` adds the files of other splits (each file once).
    """
    paths = split_paths(config, split)
    listing = _list_own(config, split, paths)
    included = [_list_own(config, other, split_paths(config, other))
                for other in _included(config, split, paths.include)]
    if included:
        pairs = dict.fromkeys(listing.pairs)  # each file once, first come first kept
        for extra in included:
            pairs.update(dict.fromkeys(extra.pairs))
            for name in ("images_without_masks", "masks_without_images", "duplicate_stems"):
                getattr(listing, name).extend(getattr(extra, name))
        listing.pairs = sorted(pairs, key=lambda pair: os.path.basename(pair[0]))
    return listing


def _included(config, split, include):
    """The names in ``data.splits.<split>.include``, checked (no self, chain or unknown split)."""
    splits = config.splits or {}
    for other in include or ():
        if other == split or (other not in splits and other not in DEFAULT_SPLITS):
            known = ", ".join(name for name in split_names(config) if name != split) or "none"
            raise DatasetError(
                f"data.splits.{split}.include: expected names of other splits ({known}), "
                f"received {other!r}. Add that split under data.splits or remove it from "
                "include.")
        if other in splits and splits[other].include:
            raise DatasetError(
                f"data.splits.{split}.include: split {other!r} has an include of its own "
                f"({splits[other].include}); includes do not chain. List every split "
                f"in data.splits.{split}.include instead.")
    return list(dict.fromkeys(include or ()))


def _list_own(config, split, paths):
    """The files of ``split``'s own folders / list (its ``include`` left aside)."""
    return DATASET_FORMATS[config.format].list_files(split, paths, config.mask_suffix)


def _names(paths, limit=10):
    shown = "\n  ".join(paths[:limit])
    more = f"\n  ... and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"\n  {shown}{more}"


def listing_problems(listing):
    """``[(kind, detail, files)]`` of a listing (empty when it is clean)."""
    split = listing.split
    found = []
    if not listing.pairs:
        found.append(("empty_split", f"split {split!r} has no (image, mask) pairs", []))
    if listing.images_without_masks:
        found.append(("image_without_mask", f"{len(listing.images_without_masks)} image(s) "
                      "without a mask (matched by file stem)", listing.images_without_masks))
    if listing.masks_without_images:
        found.append(("mask_without_image", f"{len(listing.masks_without_images)} mask(s) "
                      "without an image (matched by file stem)", listing.masks_without_images))
    if listing.duplicate_stems:
        found.append(("duplicate_stem", "files sharing a stem with another file (only the "
                      "first is used)", listing.duplicate_stems))
    return found


def split_files(config, split, strict=True):
    """``[(image_path, mask_path), ...]`` of ``split``, sorted by stem.

    With ``strict`` (the default) an empty split or any unmatched file raises
    :class:`DatasetError` naming the files.
    """
    listing = list_split(config, split)
    problems = listing_problems(listing)
    if strict and problems:
        text = "".join(f"\nSplit {split!r}: {detail}:{_names(files)}" for _, detail, files in problems)
        raise DatasetError(f"Dataset files do not match:{text}\nFix or remove these files, or fix "
                           "data.splits. `python -m fcn_tf.data verify CONFIG` lists every problem.")
    return listing.pairs
