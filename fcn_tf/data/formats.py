"""Dataset layouts: turn a :class:`DataConfig` split into (image, mask) file pairs.

Each format only says where a split's files are; matching is by file stem
(``0001.jpg`` <-> ``0001.png``) or, for the VOC formats, by the stems listed
in a split file. Problems are collected, not printed: :class:`SplitListing`
keeps the images without masks, the masks without images and the listed
stems whose files are missing, each with its path.

| format          | images                         | masks                          |
|-----------------|--------------------------------|--------------------------------|
| ``voc``         | ``JPEGImages/<stem>.jpg``       | ``SegmentationClass/<stem>.png`` |
| ``voc_aug``     | ``JPEGImages/<stem>.jpg``       | ``SegmentationClassAug/<stem>.png`` |
| ``camvid``      | ``<split>/``                    | ``<split>annot/``              |
| ``builtin``     | as camvid, generated on first use |                              |
| ``folders``     | ``images/<split>/``             | ``masks/<split>/``             |
| ``single_folder`` | ``<split>/<stem>.png``        | ``<split>/<stem>_mask.png``    |
"""

import dataclasses
import os

from fcn_tf.data.builtin import ensure_builtin_dataset
from fcn_tf.data.config import SplitConfig

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff")


class DatasetError(ValueError):
    """A dataset that cannot be used as configured; the message names the files."""


_VOC_LISTS = "ImageSets/Segmentation"
_DEFAULTS = {
    "voc": lambda s: SplitConfig("JPEGImages", "SegmentationClass", f"{_VOC_LISTS}/{s}.txt"),
    "voc_aug": lambda s: SplitConfig(
        "JPEGImages", "SegmentationClassAug",
        f"{_VOC_LISTS}/{'train_aug' if s == 'train' else s}.txt",
    ),
    "camvid": lambda s: SplitConfig(s, s + "annot"),
    "builtin": lambda s: SplitConfig(s, s + "annot"),
    "folders": lambda s: SplitConfig(f"images/{s}", f"masks/{s}"),
    "single_folder": lambda s: SplitConfig(s, s),
}


@dataclasses.dataclass
class SplitListing:
    """The files of one split and what did not match."""

    split: str
    pairs: list  # [(image_path, mask_path)], sorted by stem
    images_without_masks: list = dataclasses.field(default_factory=list)
    masks_without_images: list = dataclasses.field(default_factory=list)
    duplicate_stems: list = dataclasses.field(default_factory=list)


def _root(config):
    if config.format == "builtin":
        ensure_builtin_dataset(config.root)
    if not os.path.isdir(config.root):
        raise DatasetError(
            f"data.root: folder {config.root!r} does not exist (format "
            f"{config.format!r}). Fix the path; relative paths are resolved "
            "against the config file's folder."
        )
    return config.root


def split_names(config):
    """The configured splits: ``data.splits`` keys, or the format's defaults that exist."""
    if config.splits:
        return list(config.splits)
    root = _root(config)
    names = []
    for split in ("train", "val", "test"):
        paths = _DEFAULTS[config.format](split)
        probe = paths.list if paths.list else paths.images
        if os.path.exists(os.path.join(root, probe)):
            names.append(split)
    return names


def split_paths(config, split):
    """The split's :class:`SplitConfig` with absolute paths."""
    root = _root(config)
    if config.splits:
        if split not in config.splits:
            raise DatasetError(
                f"Split {split!r} is not in data.splits. Available: "
                f"{', '.join(sorted(config.splits))}. Add it under data.splits."
            )
        given = config.splits[split]
    else:
        given = SplitConfig()
    default = _DEFAULTS[config.format](split)

    def resolve(name):
        value = getattr(given, name) or getattr(default, name)
        return os.path.normpath(os.path.join(root, value)) if value else None

    return SplitConfig(resolve("images"), resolve("masks"), resolve("list"), given.stems,
                       given.prefixes, given.exclude_prefixes, given.include)


def _require_dir(path, what, split):
    if not os.path.isdir(path):
        raise DatasetError(
            f"Split {split!r}: {what} folder {path!r} does not exist. Check data.root "
            f"and data.splits.{split}."
        )


def _by_stem(folder, suffix=""):
    """{stem: path} of image-like files in ``folder`` whose stem ends with suffix."""
    found, duplicates = {}, []
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS or not stem.endswith(suffix):
            continue
        stem = stem[: len(stem) - len(suffix)] if suffix else stem
        path = os.path.join(folder, name)
        if stem in found:
            duplicates.append(path)
        else:
            found[stem] = path
    return found, duplicates


def _match(split, images, masks, duplicates=()):
    pairs = [(images[s], masks[s]) for s in sorted(images) if s in masks]
    return SplitListing(
        split,
        pairs,
        [images[s] for s in sorted(images) if s not in masks],
        [masks[s] for s in sorted(masks) if s not in images],
        list(duplicates),
    )


def _find(folder, stem, extensions):
    for ext in extensions:
        path = os.path.join(folder, stem + ext)
        if os.path.isfile(path):
            return path
    return None


def _list_voc(split, paths):
    if paths.stems is None and not os.path.isfile(paths.list):
        raise DatasetError(
            f"Split {split!r}: list file {paths.list!r} does not exist. Give its "
            f"path (relative to data.root) as data.splits.{split}.list, or the stems "
            f"themselves as data.splits.{split}.stems."
        )
    _require_dir(paths.images, "image", split)
    _require_dir(paths.masks, "mask", split)
    stems, source = _listed_stems(split, paths)
    keep = _prefix_filter(paths)
    listing = SplitListing(split, [])
    for stem in stems:
        if not keep(stem):
            continue
        image = _find(paths.images, stem, IMAGE_EXTENSIONS)
        mask = _find(paths.masks, stem, (".png", ".bmp", ".tif", ".tiff"))
        if image and mask:
            listing.pairs.append((image, mask))
        elif image:
            listing.images_without_masks.append(image)
        elif mask:
            listing.masks_without_images.append(mask)
        else:
            listing.images_without_masks.append(
                os.path.join(paths.images, stem + ".jpg") + f" (listed in {source}, missing)"
            )
    return _explain_empty(listing, paths)


def list_split(config, split):
    """All files of ``split`` as a :class:`SplitListing` (nothing is decoded).

    A split's ``include`` adds the files of other splits (each file once).
    """
    paths = split_paths(config, split)
    listing = _list_own(config, split, paths)
    for other in _included(config, split, paths.include):
        extra = _list_own(config, other, split_paths(config, other))
        known = set(listing.pairs)
        listing.pairs += [pair for pair in extra.pairs if pair not in known]
        listing.pairs.sort(key=lambda pair: os.path.basename(pair[0]))
        for name in ("images_without_masks", "masks_without_images", "duplicate_stems"):
            getattr(listing, name).extend(getattr(extra, name))
    return listing


def _included(config, split, include):
    """The names in ``data.splits.<split>.include``, checked (no self, chain or unknown split)."""
    for other in include or ():
        if other == split or not config.splits or other not in config.splits:
            known = ", ".join(name for name in (config.splits or {}) if name != split) or "none"
            raise DatasetError(
                f"data.splits.{split}.include: expected names of other splits in data.splits "
                f"({known}), received {other!r}. Add that split under data.splits or remove it "
                "from include.")
        if config.splits[other].include:
            raise DatasetError(
                f"data.splits.{split}.include: split {other!r} has an include of its own "
                f"({config.splits[other].include}); includes do not chain. List every split "
                f"in data.splits.{split}.include instead.")
    return list(dict.fromkeys(include or ()))


def _list_own(config, split, paths):
    """The files of ``split``'s own folders / list (its ``include`` left aside)."""
    if config.format in ("voc", "voc_aug"):
        return _list_voc(split, paths)
    _require_dir(paths.images, "image", split)
    if config.format == "single_folder":
        files, dups = _by_stem(paths.images)
        suffix = config.mask_suffix
        masks = {s[: -len(suffix)]: p for s, p in files.items() if s.endswith(suffix)}
        images = {s: p for s, p in files.items() if not s.endswith(suffix)}
    else:
        _require_dir(paths.masks, "mask", split)
        images, dups = _by_stem(paths.images)
        masks, mask_dups = _by_stem(paths.masks)
        dups = dups + mask_dups
    keep = _prefix_filter(paths)
    images = {s: p for s, p in images.items() if keep(s)}
    masks = {s: p for s, p in masks.items() if keep(s)}
    listed = _listed_stems(split, paths)
    if listed is None:
        return _explain_empty(_match(split, images, masks, dups), paths)
    # Only the listed stems; a listed stem with neither file is reported as missing.
    stems, source = listed
    wanted = set(stems)
    listing = _match(split, {s: p for s, p in images.items() if s in wanted},
                     {s: p for s, p in masks.items() if s in wanted}, dups)
    listing.images_without_masks += [
        os.path.join(paths.images, stem) + f" (listed in {source}, missing)"
        for stem in stems if keep(stem) and stem not in images and stem not in masks]
    return listing


def _explain_empty(listing, paths):
    """Say so when the prefixes left a split without files (rather than just "empty")."""
    if not listing.pairs and (paths.prefixes or paths.exclude_prefixes):
        listing.images_without_masks.append(
            f"{paths.images} (no stem matches data.splits.{listing.split}.prefixes "
            f"{paths.prefixes} / exclude_prefixes {paths.exclude_prefixes})")
    return listing


def _prefix_filter(paths):
    """``keep(stem)``: the split's ``prefixes`` and ``exclude_prefixes`` as one test."""
    include = tuple(paths.prefixes or ())
    exclude = tuple(paths.exclude_prefixes or ())
    return lambda stem: ((not include or stem.startswith(include))
                         and not (exclude and stem.startswith(exclude)))


def _listed_stems(split, paths):
    """``(stems, source)`` of ``stems`` or a ``list`` file, or ``None`` when neither is given."""
    if paths.stems is not None:
        return paths.stems, f"data.splits.{split}.stems"
    if not paths.list:
        return None
    if not os.path.isfile(paths.list):
        raise DatasetError(
            f"Split {split!r}: list file {paths.list!r} does not exist. Give its path "
            f"(relative to data.root) as data.splits.{split}.list, one stem per line.")
    with open(paths.list, encoding="utf-8") as f:
        stems = [os.path.splitext(os.path.basename(line.split()[0]))[0]
                 for line in f if line.strip()]
    return stems, paths.list


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
