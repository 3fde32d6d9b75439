"""How a split's folders become (image, mask) file pairs: the three ways formats list files.

A dataset format (:mod:`fcn_tf.data.format_table`) names one of the listers
below; each takes the split's name, its resolved paths (a
:class:`~fcn_tf.data.config.SplitConfig` of absolute paths) and the
configured ``mask_suffix``, and returns a :class:`SplitListing`:

- :func:`list_listed_stems`: the stems of a list file (VOC's ``ImageSets``),
  each looked up in the image and the mask folder;
- :func:`list_two_folders`: an image folder and a mask folder matched by stem;
- :func:`list_one_folder`: one folder, masks told by ``mask_suffix``.

Problems are collected, not printed: a listing keeps the images without
masks, the masks without images and the listed stems whose files are
missing, each with its path. Nothing here reads the config.
"""

import dataclasses
import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff")
_LISTED_MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")


class DatasetError(ValueError):
    """A dataset that cannot be used as configured; the message names the files."""


@dataclasses.dataclass
class SplitListing:
    """The files of one split and what did not match."""

    split: str
    pairs: list  # [(image_path, mask_path)], sorted by stem
    images_without_masks: list = dataclasses.field(default_factory=list)
    masks_without_images: list = dataclasses.field(default_factory=list)
    duplicate_stems: list = dataclasses.field(default_factory=list)


def list_listed_stems(split, paths, mask_suffix):
    """The stems of the split's list file (or ``stems``), each found in both folders.

    ``mask_suffix`` is not used: masks share the image's stem.
    """
    del mask_suffix
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
        mask = _find(paths.masks, stem, _LISTED_MASK_EXTENSIONS)
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


def list_two_folders(split, paths, mask_suffix):
    """Images of ``paths.images`` and masks of ``paths.masks``, matched by stem.

    ``mask_suffix`` is not used: masks share the image's stem.
    """
    del mask_suffix
    _require_dir(paths.images, "image", split)
    _require_dir(paths.masks, "mask", split)
    images, dups = _by_stem(paths.images)
    masks, mask_dups = _by_stem(paths.masks)
    return _matched(split, paths, images, masks, dups + mask_dups)


def list_one_folder(split, paths, mask_suffix):
    """One folder: ``<stem>.png`` is an image, ``<stem><mask_suffix>.png`` its mask."""
    _require_dir(paths.images, "image", split)
    files, dups = _by_stem(paths.images)
    masks = {s[: -len(mask_suffix)]: p for s, p in files.items() if s.endswith(mask_suffix)}
    images = {s: p for s, p in files.items() if not s.endswith(mask_suffix)}
    return _matched(split, paths, images, masks, dups)


def _matched(split, paths, images, masks, dups):
    """``{stem: path}`` of images and masks as a listing: prefixes, then ``stems`` / ``list``."""
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
