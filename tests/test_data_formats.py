"""Every layout x mask encoding: file matching, batch shapes/dtypes, exact labels."""

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from data_fixtures import (
    ENCODINGS,
    IGNORE,
    LAYOUTS,
    NUM_CLASSES,
    SIZE,
    image_for,
    labels,
    make_dataset,
)
from fcn_tf.data import DatasetError, build_dataset, dataset_info, load_data_config, split_files
from fcn_tf.data.decode import make_decoder, read_header, read_image_array, read_mask_array
from fcn_tf.data.formats import split_names, split_paths
from fcn_tf.preprocessing import Preprocessing

IDENTITY = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_layout_and_encoding(tmp_path, layout, encoding):
    path, written = make_dataset(tmp_path, layout, encoding)
    config = load_data_config(path)
    num_classes = 2 if encoding == "binary" else NUM_CLASSES
    assert config.num_classes == num_classes

    pairs = split_files(config, "train")
    assert [p[0].split("/")[-1].split(".")[0] for p in pairs] == [s for s, _, _ in written["train"]]

    train = build_dataset(config, "train", training=True, batch_size=2, preprocessing=IDENTITY)
    batches = list(train)
    assert len(batches) == 3  # 6 examples, batch 2, full batches only
    images, masks = batches[0]
    assert images.shape == (2, 16, 16, 3) and images.dtype.name == "float32"
    assert masks.shape == (2, 16, 16) and masks.dtype.name == "int32"
    allowed = set(range(num_classes)) | {IGNORE}
    for _, m in batches:
        assert set(np.unique(m.numpy())) <= allowed

    # Evaluation keeps full resolution: labels equal the stored ones exactly,
    # padding (to a multiple of 32) is the ignore label and image 0.
    val = build_dataset(config, "val", training=False, batch_size=3, preprocessing=IDENTITY)
    images, masks = next(iter(val))
    assert images.shape == (3, 32, 32, 3) and masks.shape == (3, 32, 32)
    h, w = SIZE
    for i, (_, image, ids) in enumerate(written["val"]):
        np.testing.assert_array_equal(masks[i, :h, :w].numpy(), ids)
        assert np.all(masks[i, h:].numpy() == IGNORE) and np.all(masks[i, :, w:].numpy() == IGNORE)
        assert np.all(images[i, h:].numpy() == 0.0)
        if image.shape[-1] == 3 and encoding != "rgb":
            np.testing.assert_array_equal(images[i, :h, :w].numpy(), image.astype(np.float32))


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".tif", ".png"])
@pytest.mark.parametrize("channels", [1, 3])
def test_image_files_and_channels(tmp_path, ext, channels):
    """JPEG/BMP/TIFF/PNG images, converted to the channels the model expects."""
    path, written = make_dataset(tmp_path, "folders", "ids", image_ext=ext, channels=channels,
                                 counts={"train": 2, "val": 2})
    config = load_data_config(path)
    ds = build_dataset(config, "val", training=False, batch_size=2,
                       preprocessing=Preprocessing.preset("unit", channels))
    images, masks = next(iter(ds))
    assert images.shape[-1] == channels
    assert 0.0 <= float(np.min(images)) and float(np.max(images)) <= 1.0
    if ext != ".jpg":  # lossless: pixels survive exactly
        np.testing.assert_allclose(images[0, :SIZE[0], :SIZE[1]].numpy() * 255.0,
                                   written["val"][0][1], atol=1e-3)
    np.testing.assert_array_equal(masks[0, :SIZE[0], :SIZE[1]].numpy(), written["val"][0][2])


def test_rgba_and_grayscale_images_become_rgb(tmp_path):
    rgba = np.dstack([np.full(SIZE, 10, np.uint8), np.full(SIZE, 20, np.uint8),
                      np.full(SIZE, 30, np.uint8), np.full(SIZE, 99, np.uint8)])
    gray = np.full(SIZE, 77, np.uint8)
    images = {0: rgba, 1: gray}
    path, _ = make_dataset(tmp_path, "camvid", "ids", counts={"val": 2},
                           image_fn=lambda seed: images[seed % 2])
    ds = build_dataset(load_data_config(path), "val", training=False, batch_size=2,
                       preprocessing=IDENTITY)
    batch, _ = next(iter(ds))
    np.testing.assert_array_equal(batch[0, 0, 0].numpy(), [10, 20, 30])
    np.testing.assert_array_equal(batch[1, 0, 0].numpy(), [77, 77, 77])


def test_ignore_values_map_raw_void_id(tmp_path):
    """CamVid-style void id (here 2) becomes the ignore label everywhere."""
    path, written = make_dataset(tmp_path, "camvid", "ids", counts={"val": 2})
    config = load_data_config(path)
    config.num_classes, config.class_names, config.colors = 2, ["a", "b"], [(0, 0, 0), (1, 1, 1)]
    config.ignore_values = [2]
    ds = build_dataset(config, "val", training=False, batch_size=2, preprocessing=IDENTITY)
    _, masks = next(iter(ds))
    ids = written["val"][0][2]
    expected = np.where(ids == 2, IGNORE, ids)
    np.testing.assert_array_equal(masks[0, :SIZE[0], :SIZE[1]].numpy(), expected)


def test_dataset_info_defaults(tmp_path):
    path, _ = make_dataset(tmp_path, "voc", "palette", counts={"train": 2})
    info = dataset_info(load_data_config(path))
    assert info.num_classes == 3 and info.ignore_label == 255 and len(info.colors) == 3
    assert info.class_names == ("class_0", "class_1", "class_2")
    assert info.to_dict()["colors"][0] == [0, 0, 0]


def _dataset_with_splits(tmp_path, layout, make_splits):
    """A 6-image train folder in ``layout`` whose config's ``data.splits`` is
    ``make_splits(stems, folders, root)`` (``folders``: the default train split's
    images/masks/list, relative to the root); returns the config and the stems."""
    path, written = make_dataset(tmp_path, layout, "ids", counts={"train": 6})
    document = json.loads(open(path).read())
    stems = [s for s, _, _ in written["train"]]
    default = load_data_config(path)
    base = split_paths(default, "train")
    folders = {k: os.path.relpath(getattr(base, k), default.root) if getattr(base, k) else None
               for k in ("images", "masks", "list")}
    document["data"]["splits"] = make_splits(stems, folders, default.root)
    with open(path, "w") as f:
        json.dump(document, f)
    return load_data_config(path), stems


def _names(config, split, strict=True):
    return [os.path.basename(image).split(".")[0]
            for image, _ in split_files(config, split, strict=strict)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_split_stems_hold_out_part_of_a_folder(tmp_path, layout):
    """``data.splits.X.stems`` keeps only the listed stems, in any layout."""
    config, stems = _dataset_with_splits(tmp_path, layout, lambda stems, folders, root: {
        "train": {**folders, "stems": stems[:4]},
        "val": {**folders, "stems": stems[4:] + ["nowhere"]}})
    assert _names(config, "train") == stems[:4]
    # A listed stem with no file is a problem that names the stem and where it was listed.
    with pytest.raises(DatasetError, match=r"nowhere.*data.splits.val.stems, missing"):
        split_files(config, "val")
    assert _names(config, "val", strict=False) == stems[4:]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_split_prefixes_and_list_files_hold_out_whole_recordings(tmp_path, layout):
    """``prefixes`` / ``exclude_prefixes`` / ``list`` pick stems without copying files."""
    def splits(stems, folders, root):
        (tmp_path / "held_out.txt").write_text("\n".join(stems[1:4]) + "\n")
        return {
            "train": {**folders, "exclude_prefixes": stems[:2]},
            "val": {**folders, "prefixes": stems[:2]},
            "listed": {**folders, "list": os.path.relpath(tmp_path / "held_out.txt", root),
                       "prefixes": stems[2:3]},
            "nothing": {**folders, "prefixes": ["no-such-recording"]},
        }

    config, stems = _dataset_with_splits(tmp_path, layout, splits)
    assert _names(config, "train") == stems[2:] and _names(config, "val") == stems[:2]
    assert _names(config, "listed") == stems[2:3]
    with pytest.raises(DatasetError, match=r"no stem matches data.splits.nothing.prefixes"):
        split_files(config, "nothing")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_split_include_adds_the_files_of_other_splits(tmp_path, layout):
    """``include`` trains on train + val without copying files; each file counted once."""
    config, stems = _dataset_with_splits(tmp_path, layout, lambda stems, folders, root: {
        "train": {**folders, "exclude_prefixes": stems[:3], "include": ["val", "val"]},
        "val": {**folders, "prefixes": stems[1:3]},
        "again": {**folders, "include": ["val"]}})
    assert _names(config, "train") == stems[1:]
    assert _names(config, "again") == stems  # its own files already hold val's: once each


@pytest.mark.parametrize("include, expected", [
    (["train"], r"data.splits.train.include: expected names of other splits \(val\), "
                r"received 'train'"),
    (["tset"], r"expected names of other splits \(val\), received 'tset'"),
    (["val"], r"split 'val' has an include of its own \(\['train'\]\); includes do not chain"),
])
def test_split_include_refuses_itself_unknown_and_chained_splits(tmp_path, include, expected):
    config, _ = _dataset_with_splits(tmp_path, "camvid", lambda stems, folders, root: {
        "train": {**folders, "include": include},
        "val": {**folders, **({"include": ["train"]} if include == ["val"] else {})}})
    with pytest.raises(DatasetError, match=expected):
        split_files(config, "train")


def test_data_splits_add_to_the_formats_default_splits(tmp_path):
    """``{"train": {"include": ["val"]}}`` alone keeps the format's val and test folders."""
    path, written = make_dataset(tmp_path, "camvid", "ids",
                                 counts={"train": 3, "val": 2, "test": 2})
    document = json.loads(open(path).read())
    document["data"]["splits"] = {"train": {"include": ["val"]}}
    with open(path, "w") as f:
        json.dump(document, f)
    config = load_data_config(path)
    assert split_names(config) == ["train", "val", "test"]
    stems = {split: [s for s, _, _ in written[split]] for split in ("train", "val", "test")}
    assert sorted(_names(config, "train")) == sorted(stems["train"] + stems["val"])
    assert _names(config, "test") == stems["test"]
    with pytest.raises(DatasetError, match=r"Split 'tset' is neither in data.splits nor one of "
                                           r"the format's splits \(train, val, test\)"):
        split_files(config, "tset")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_turns_images_and_masks_upright_everywhere(tmp_path, orientation):
    """Pillow readers and the TF pipeline both give what ImageOps.exif_transpose gives."""
    config_path, _ = make_dataset(tmp_path, "camvid", "ids", counts={"train": 2, "val": 1})
    config = load_data_config(config_path)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image_path, mask_path = str(tmp_path / "img.png"), str(tmp_path / "mask.png")
    Image.fromarray(image_for(1, size=(12, 20))).save(image_path, exif=exif.tobytes())
    Image.fromarray(labels(1, size=(12, 20))).save(mask_path, exif=exif.tobytes())
    with Image.open(image_path) as im:
        upright_image = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    with Image.open(mask_path) as im:
        upright_mask = np.asarray(ImageOps.exif_transpose(im))
    assert read_header(image_path).orientation == orientation
    assert np.array_equal(read_image_array(image_path, 3), upright_image)
    assert np.array_equal(read_mask_array(mask_path, config), upright_mask)
    image, mask = make_decoder(config)(image_path, mask_path, orientation, orientation)
    assert np.array_equal(image.numpy(), upright_image)
    assert np.array_equal(mask.numpy(), upright_mask)


def test_the_pipeline_warns_about_lossy_masks(tmp_path):
    config_path, _ = make_dataset(tmp_path, "camvid", "ids", counts={"train": 2, "val": 2})
    root = tmp_path / "ds" / "valannot"
    Image.open(root / "val_001.png").save(root / "val_001.jpg", quality=95)
    (root / "val_001.png").unlink()
    with pytest.warns(UserWarning, match=r"Split 'val': 1 mask\(s\) are stored in a lossy format, "
                                         r"e\.g\. .*val_001\.jpg: mask stored in a lossy format"):
        build_dataset(load_data_config(config_path), "val", training=False, batch_size=1,
                      preprocessing=Preprocessing.preset("unit"))
