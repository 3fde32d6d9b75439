"""The dataset formats (``data.format``): one row per format, everything known of it.

A row says which mask encoding and class count the format implies, where a
split's files are by default, and how they are listed
(:mod:`fcn_tf.data.listing`). :class:`~fcn_tf.data.config.DataConfig` takes
its ``format`` choices and defaults from here and
:mod:`fcn_tf.data.formats` its folders and lister, so a new format is one
row (and a row of docs/DATA.md's layout table).

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

from fcn_tf.data import builtin, palette
from fcn_tf.data.listing import list_listed_stems, list_one_folder, list_two_folders

BUILTIN_ROOT = os.path.join("data", "builtin")
_VOC_LISTS = "ImageSets/Segmentation"


@dataclasses.dataclass(frozen=True)
class DatasetFormat:
    """One dataset layout.

    Attributes:
        mask_encoding: the ``data.mask_encoding`` it implies.
        num_classes: its class count, ``None`` where the config must give it.
        folders: ``folders(split) -> (images, masks, list file or None)``,
            paths relative to ``data.root``; ``data.splits`` overrides each.
        list_files: ``list_files(split, paths, mask_suffix) -> SplitListing``,
            one of :mod:`fcn_tf.data.listing`'s listers.
        class_names: its class names, ``None`` for the default names.
        root: the ``data.root`` used when none is given, ``None`` where the
            config must give it.
        prepare: ``prepare(root)`` called before its files are listed (the
            builtin set is generated on first use), or ``None``.
    """

    mask_encoding: str
    num_classes: int | None
    folders: object
    list_files: object
    class_names: tuple | None = None
    root: str | None = None
    prepare: object = None


def _annot_folders(split):
    return split, split + "annot", None


def _voc_folders(masks, train_list="train"):
    def folders(split):
        listed = train_list if split == "train" else split
        return "JPEGImages", masks, f"{_VOC_LISTS}/{listed}.txt"
    return folders


_VOC_CLASSES = len(palette.VOC_CLASS_NAMES)

# One row per format; data.format's choices are its keys, in this order.
DATASET_FORMATS = {
    "builtin": DatasetFormat("ids", len(builtin.CLASS_NAMES), _annot_folders, list_two_folders,
                             class_names=builtin.CLASS_NAMES, root=BUILTIN_ROOT,
                             prepare=builtin.ensure_builtin_dataset),
    "voc": DatasetFormat("palette", _VOC_CLASSES, _voc_folders("SegmentationClass"),
                         list_listed_stems),
    "voc_aug": DatasetFormat("palette", _VOC_CLASSES,
                             _voc_folders("SegmentationClassAug", train_list="train_aug"),
                             list_listed_stems),
    "folders": DatasetFormat("ids", None, lambda split: (f"images/{split}", f"masks/{split}", None),
                             list_two_folders),
    "single_folder": DatasetFormat("ids", None, lambda split: (split, split, None),
                                   list_one_folder),
    "camvid": DatasetFormat("ids", None, _annot_folders, list_two_folders),
}
