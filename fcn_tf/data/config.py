"""The "data" section of a config file: :class:`DataConfig`.

Every key is read by name and checked by :func:`fcn_tf.utils.schema.parse_section`
(unknown keys get a did-you-mean error). Values left out are filled from the
format's defaults in ``__post_init__``, so a parsed config always says which
folders, encoding, classes and colours are really used; ``to_dict`` of it is
what training logs.

Example:
    >>> cfg = DataConfig(format="camvid", root="/data/camvid", num_classes=11,
    ...                  ignore_values=[11])
    >>> cfg.mask_encoding, cfg.class_names[:2]
    ('ids', ['class_0', 'class_1'])
"""

import dataclasses
import os
import typing

from fcn_tf.utils.jsonc import load_jsonc
from fcn_tf.utils.schema import ConfigError, parse_section, to_dict
from fcn_tf.utils.schema import field as _field
from fcn_tf.data import palette
from fcn_tf.data.format_table import DATASET_FORMATS

FORMATS = tuple(DATASET_FORMATS)  # data.format's choices: the rows of the format table
MASK_ENCODINGS = ("ids", "palette", "rgb", "binary")

# Images and masks with more pixels are refused from their header, before decoding.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000


@dataclasses.dataclass
class SplitConfig:
    """Where one split lives; every path is relative to ``data.root``."""

    images: str | None = _field(help="image folder (or the shared folder for single_folder)")
    masks: str | None = _field(help="mask folder")
    list: str | None = _field(help="list file of stems, one per line (any format; the voc "
                                   "formats default to their ImageSets lists)")
    # typing.List: the field above shadows the builtin ``list`` in this class body.
    stems: typing.List[str] | None = _field(  # noqa: UP006
        help="only these file stems (any format), e.g. to hold out part of a folder as val"
    )
    prefixes: typing.List[str] | None = _field(  # noqa: UP006
        help="only stems that start with one of these, e.g. a recording's name (CamVid "
             "'0006R0') to validate on a sequence that training never sees"
    )
    exclude_prefixes: typing.List[str] | None = _field(  # noqa: UP006
        help="leave out stems that start with one of these (the held-out recordings)"
    )
    include: typing.List[str] | None = _field(  # noqa: UP006
        help="also the files of these other splits, e.g. train: {include: [val]} trains the "
             "final model on train + val once the recipe is chosen"
    )


@dataclasses.dataclass
class ColorMapEntry:
    """One row of the colour -> class table used by ``mask_encoding: "rgb"``."""

    color: tuple[int, int, int] = _field(min=0, max=255, help="RGB colour in the mask")
    label: int = _field(0, min=0, max=255, help="class id (or the ignore label)")


@dataclasses.dataclass
class AugmentConfig:
    """Training augmentation; geometric parts act on image and mask jointly."""

    enabled: bool = _field(True, help="false turns every augmentation off")
    scale: tuple[float, float] = _field((0.5, 2.0), min=0.05, max=8.0, help="random scale range")
    flip: bool = _field(True, help="random horizontal flip")
    rotation: float = _field(0.0, min=0.0, max=45.0, help="max rotation in degrees (0 = off)")
    elastic: float = _field(0.0, min=0.0, max=100.0,
                            help="elastic deformation: std of the displacements in pixels (0 = off)")
    elastic_grid: int = _field(3, min=2, max=64, help="elastic: displacement grid points per side")
    brightness: float = _field(0.1, min=0.0, max=1.0, help="max brightness delta (fraction of 255)")
    contrast: float = _field(0.1, min=0.0, max=0.9, help="contrast factor in [1-c, 1+c]")
    saturation: float = _field(0.1, min=0.0, max=0.9, help="saturation factor in [1-s, 1+s]")
    hue: float = _field(0.02, min=0.0, max=0.5, help="max hue shift (fraction of the hue circle)")
    # How one recording differs from another (camera, white balance, lighting): off by default.
    channel_shift: float = _field(0.0, min=0.0, max=0.5,
                                  help="colour cast: per-channel shift in [-c, c] * 255 (0 = off)")
    gamma: float = _field(0.0, min=0.0, max=2.0,
                          help="gamma drawn log-uniformly in [1/(1+g), 1+g] (0 = off)")
    blur: float = _field(0.0, min=0.0, max=1.0,
                         help="probability of a Gaussian blur of the image (0 = off)")
    blur_sigma: float = _field(1.5, min=0.1, max=5.0,
                               help="blur: sigma drawn in [0.1, blur_sigma] pixels")
    noise: float = _field(0.0, min=0.0, max=50.0,
                          help="Gaussian noise: std drawn in [0, noise], pixel units (0 = off)")
    # Thin and rare classes get few pixels of a random crop: centre some crops on them.
    class_crop: float = _field(0.0, min=0.0, max=1.0,
                               help="probability that a crop is centred on a pixel of one of "
                                    "class_crop_classes present in the image (0 = off)")
    class_crop_classes: typing.List[int] = _field(  # noqa: UP006
        factory=list, min=0, max=254,
        help="class ids class_crop centres on (one present class drawn uniformly, then one of "
             "its pixels)")

    # Scenes put together from pieces of others (batches of two or more).
    cutmix: float = _field(0.0, min=0.0, max=1.0,
                           help="probability that a training crop gets a box (10-50% of its "
                                "area) of another crop of the batch, image and mask (0 = off)")

    def __post_init__(self):
        if self.scale[0] > self.scale[1]:
            raise ConfigError(
                f"data.augment.scale: expected [min, max] with min <= max, "
                f"received {list(self.scale)}. Swap the two values."
            )
        if self.class_crop > 0 and not self.class_crop_classes:
            raise ConfigError(
                f"data.augment.class_crop is {self.class_crop} but class_crop_classes is empty: "
                "list the class ids to centre crops on (e.g. [2, 6, 7] for CamVid's pole, sign "
                "and fence), or set class_crop to 0.")
        if self.class_crop > 0 and self.rotation > 0:
            raise ConfigError(
                f"data.augment.class_crop ({self.class_crop}) needs data.augment.rotation 0, "
                f"received rotation {self.rotation}: class-centred crops are drawn on the "
                "scale-and-crop path only. Set one of them to 0.")


@dataclasses.dataclass
class DataConfig:
    """Everything that turns files on disk into batches (see docs/DATA.md)."""

    format: str = _field("builtin", choices=FORMATS, help="dataset layout")
    root: str | None = _field(path=True, help="dataset folder, relative to the config file")
    splits: dict[str, SplitConfig] | None = _field(help="split name -> folders/list; default per format")
    mask_suffix: str = _field("_mask", help="single_folder: mask file stem = image stem + suffix")
    mask_encoding: str | None = _field(choices=MASK_ENCODINGS, help="how masks store classes")
    color_map: list[ColorMapEntry] | None = _field(help="rgb encoding: colour -> class table")
    num_classes: int | None = _field(min=1, max=255, help="number of classes (ignore excluded)")
    class_names: list[str] | None = _field(help="one name per class")
    colors: list[tuple[int, int, int]] | None = _field(min=0, max=255, help="one RGB colour per class")
    ignore_label: int = _field(255, min=0, max=255, help="mask value ignored by losses and metrics")
    ignore_values: list[int] = _field(factory=list, min=0, max=255, help="raw mask values mapped to ignore_label")
    image_channels: int = _field(3, choices=(1, 3), help="channels the model takes")
    crop_size: tuple[int, int] = _field((128, 128), min=8, max=16384,
                                        help="training crop [height, width]")
    eval_pad_multiple: int = _field(32, min=1, help="eval batches padded to a multiple of this")
    max_image_pixels: int = _field(DEFAULT_MAX_IMAGE_PIXELS, min=1,
                                   help="refuse larger images and masks before decoding them")
    augment: AugmentConfig = _field(factory=AugmentConfig, help="training augmentation")
    cache: str = _field("auto", choices=("auto", "memory", "off"), help="keep decoded data in memory")
    cache_limit_mb: int = _field(1024, min=0, help="'auto' caches when the decoded split fits")
    shuffle_buffer: int = _field(1024, min=1, help="shuffle buffer (in decoded examples)")
    seed: int = _field(0, help="seed of shuffling and augmentation")
    deterministic: bool = _field(False, help="fixed element order (tests, debugging)")

    def __post_init__(self):
        layout = DATASET_FORMATS[self.format]
        if self.mask_encoding is None:
            self.mask_encoding = layout.mask_encoding
        if self.root is None:
            self.root = layout.root
        if self.root is None:
            raise ConfigError(
                f"data.root: the {self.format!r} format needs the dataset folder, "
                "received nothing. Add \"root\": \"path/to/dataset\" (relative to "
                "the config file)."
            )
        self._fill_classes(layout)
        self._check_labels()
        self.splits = dict(self.splits) if self.splits else None

    def _fill_classes(self, layout):
        """``num_classes``, ``class_names`` and ``colors``: given, or the format's defaults."""
        num_classes = layout.num_classes
        if self.num_classes is None:
            if self.class_names is not None:
                num_classes = len(self.class_names)
            elif self.mask_encoding == "binary":
                num_classes = 2
            if num_classes is None:
                raise ConfigError(
                    f"data.num_classes: the {self.format!r} format has no default "
                    "class count. Give \"num_classes\" or a \"class_names\" list."
                )
            self.num_classes = num_classes
        n = self.num_classes
        if self.class_names is None:
            self.class_names = (
                list(layout.class_names) if layout.class_names is not None
                else palette.default_class_names(n)
            )
        if self.colors is None:
            self.colors = palette.default_colors(n)
        for key in ("class_names", "colors"):
            if len(getattr(self, key)) != n:
                raise ConfigError(
                    f"data.{key}: expected {n} entries (num_classes), received "
                    f"{len(getattr(self, key))}. Give one entry per class."
                )
        self.colors = [tuple(c) for c in self.colors]

    def _check_labels(self):
        """The ignore label, the binary encoding and class_crop_classes against num_classes."""
        n = self.num_classes
        if self.ignore_label < n:
            raise ConfigError(
                f"data.ignore_label: {self.ignore_label} is a class id (num_classes={n}). "
                "Use a value >= num_classes, usually 255, and map raw void ids "
                "with \"ignore_values\"."
            )
        if self.mask_encoding == "binary" and n != 2:
            raise ConfigError(
                f"data.num_classes: the binary mask encoding gives 2 classes, received {n}."
            )
        wrong = [c for c in self.augment.class_crop_classes if c >= n]
        if wrong:
            raise ConfigError(
                f"data.augment.class_crop_classes: expected class ids below num_classes ({n}), "
                f"received {wrong}. Use the ids of data.class_names (0 = "
                f"{self.class_names[0]!r}).")

    def to_dict(self):
        """Plain JSON-able dict of the resolved config."""
        return to_dict(self)


def parse_data_config(mapping, base_dir=None):
    """Build a :class:`DataConfig` from the "data" mapping of a config file."""
    mapping = dict(mapping or {})
    name = mapping.get("format", "builtin")
    layout = DATASET_FORMATS.get(name) if isinstance(name, str) else None
    if layout is not None and layout.root is not None and "root" not in mapping:
        mapping["root"] = layout.root  # resolved against the config's folder
    return parse_section(DataConfig, mapping, "data", base_dir)


def load_data_config(path):
    """Read the "data" section of the config file at ``path`` (other sections ignored).

    Paths in it are resolved against the folder of ``path``.
    """
    document = load_jsonc(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a JSON object at top level.")
    base_dir = os.path.dirname(os.path.abspath(os.fspath(path)))
    return parse_data_config(document.get("data"), base_dir)
