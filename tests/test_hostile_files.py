"""Hostile files: every kind of bad input gets a clear answer, and the user's files stay as they were.

One row per kind of input (:data:`CASES`): what it is fed to (predict, verify,
the training pipeline, weight loading), how it is made, a fragment (regular
expression) the answer must hold, and the user's files, hashed before and
after. predict runs with a stub model (no TensorFlow model is built), so the
whole table takes seconds.
"""

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import pickle
import re
import struct
import zipfile
import zlib

import h5py
import numpy as np
import pytest
from PIL import Image

import fcn_tf
import torch_writer
from data_fixtures import labels, make_dataset, save_image
from fcn_tf import predict
from fcn_tf.backbones import IMAGENET_FILES
from fcn_tf.data import DatasetError, build_dataset, check_dataset, format_report
from fcn_tf.data import load_data_config, verify
from fcn_tf.data.decode import make_decoder, read_image_array
from fcn_tf.preprocessing import Preprocessing
from fcn_tf.inference import InferenceModel
from fcn_tf.weights import WeightsError, imagenet

RGB = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
ORIENTATION = 0x0112


@dataclasses.dataclass
class Case:
    """A kind of bad input: ``make(tmp)`` writes it and returns ``(run, user files[, check])``."""

    kind: str
    surface: str
    make: object
    expect: str


# --- drivers ------------------------------------------------------------------


def _stub_model():
    """A two-class per-pixel "model" standing in for a checkpoint."""
    def logits(pixels):
        red = np.asarray(pixels, np.float32)[..., :1]
        return np.concatenate([red, 128.0 - red], -1)

    info = {"class_names": ["dark", "light"], "colors": [(0, 0, 0), (255, 0, 0)],
            "ignore_label": 255, "image_channels": 3, "num_classes": 2}
    return InferenceModel(logits, info, Preprocessing.preset("unit"), "stub", "keras", "stub")


@pytest.fixture(autouse=True)
def _stub_loader(monkeypatch):
    monkeypatch.setattr(predict, "load_for_inference", lambda path: _stub_model())


def _predict(*args):
    """``python -m fcn_tf.predict`` with ``args``: its exit status and output, as text."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = predict.main(["--model", "stub", *map(str, args)])
    return f"exit {code}\n{out.getvalue()}{err.getvalue()}"


@functools.cache
def _tiny_model():
    return fcn_tf.build_model("unet", 3, base_filters=4, depth=2)


def _load(path, model="tiny"):
    try:
        fcn_tf.load_weights(_tiny_model() if model == "tiny" else model, path)
    except WeightsError as error:
        return f"WeightsError: {error}"
    return "loaded"


def _verify(config):
    return format_report(verify(load_data_config(config)))


def _check(config, splits=("train", "val")):
    try:
        check_dataset(load_data_config(config), splits)
    except DatasetError as error:
        return f"DatasetError: {error}"
    return "check passed"


def _pipeline(config, split="train", training=True):
    try:
        build_dataset(load_data_config(config), split, training=training, batch_size=2,
                      preprocessing=Preprocessing.preset("unit"))
    except (DatasetError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return "pipeline built"


def _set_data(config, **keys):
    document = json.loads(open(config).read())
    document["data"].update(keys)
    with open(config, "w") as handle:
        json.dump(document, handle)
    return config


def _dataset(tmp, **kwargs):
    config, _ = make_dataset(tmp, **kwargs)
    return config, tmp / "ds"


def _dataset_files(root):
    return sorted(str(p) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def _save_oriented(array, path, orientation, **options):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(array).save(path, exif=exif.tobytes(), **options)


def _digest(path):
    path = str(path)
    if os.path.islink(path):
        return ("link", os.readlink(path))
    if os.path.isdir(path):
        return ("folder", sorted(os.listdir(path)))
    if not os.path.isfile(path):
        return ("special", os.stat(path).st_mode)
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


# --- predict --------------------------------------------------------------------


def _png(tmp, name="a.png", array=RGB):
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _huge_png(path, width, height):
    """A PNG whose header says ``width x height``, with almost no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    return path


def predict_into_input_folder(tmp):
    folder = tmp / "images"
    image = _png(folder, "img.png")
    return lambda: _predict(folder, "--out", folder), [image]


def predict_over_a_users_file(tmp):
    image = _png(tmp, "a.png")
    (tmp / "out").mkdir()
    mine = tmp / "out" / "a.png"
    mine.write_bytes(b"my own notes, not a prediction")

    def check():
        assert not (tmp / "out" / "a_overlay.png").exists()  # nothing written at all
    return lambda: _predict(image, "--out", tmp / "out"), [image, mine], check


def predict_huge_png_header(tmp):
    image = _huge_png(tmp / "big.png", 30000, 30000)
    return lambda: _predict(image, "--out", tmp / "out"), [image]


def predict_huge_jpeg_header(tmp):
    Image.fromarray(RGB).save(tmp / "j.jpg")
    data = bytearray((tmp / "j.jpg").read_bytes())
    at = data.find(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", 60000, 60000)
    (tmp / "j.jpg").write_bytes(bytes(data))
    return lambda: _predict(tmp / "j.jpg", "--out", tmp / "out"), [tmp / "j.jpg"]


def predict_folder_named_like_an_image(tmp):
    image = _png(tmp / "in", "a.png")
    (tmp / "in" / "sub.png").mkdir()

    def check():
        assert sorted(os.listdir(tmp / "out")) == [predict.MANIFEST, "a.png", "a_overlay.png"]
    return (lambda: _predict(tmp / "in", "--out", tmp / "out"),
            [image, tmp / "in" / "sub.png"], check)


def predict_empty_file(tmp):
    (tmp / "e.png").write_bytes(b"")
    return lambda: _predict(tmp / "e.png", "--out", tmp / "out"), [tmp / "e.png"]


def predict_truncated_png(tmp):
    image = _png(tmp, "t.png")
    image.write_bytes(image.read_bytes()[:60])
    return lambda: _predict(image, "--out", tmp / "out"), [image]


def predict_text_named_png(tmp):
    (tmp / "t.png").write_text("hello, I am text")
    return lambda: _predict(tmp / "t.png", "--out", tmp / "out"), [tmp / "t.png"]


def predict_rgba_image(tmp):
    image = _png(tmp, "a.png", np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)]))

    def check():
        assert np.asarray(Image.open(tmp / "out" / "a.png")).shape == RGB.shape[:2]
    return lambda: _predict(image, "--out", tmp / "out"), [image], check


def predict_symlink_loop(tmp):
    os.symlink(tmp / "loop.png", tmp / "loop.png")
    return lambda: _predict(tmp / "loop.png", "--out", tmp / "out"), [tmp / "loop.png"]


def predict_pipe_in_folder(tmp):
    image = _png(tmp / "in", "a.png")
    os.mkfifo(tmp / "in" / "b.png")  # opening it to read would block for ever
    return (lambda: _predict(tmp / "in", "--out", tmp / "out", "--skip-invalid"),
            [image, tmp / "in" / "b.png"])


def predict_unicode_names(tmp):
    image = _png(tmp / "in dir é", "ü ñ 图.png")

    def check():
        assert (tmp / "out é" / "ü ñ 图.png").is_file()
    return lambda: _predict(tmp / "in dir é", "--out", tmp / "out é"), [image], check


def predict_out_is_a_file(tmp):
    image = _png(tmp, "a.png")
    (tmp / "out").write_text("mine")
    return lambda: _predict(image, "--out", tmp / "out"), [image, tmp / "out"]


def predict_stems_that_collide(tmp):
    inputs = [_png(tmp / "x", "p.png"), _png(tmp / "y", "p.png", RGB[::-1]),
              _png(tmp / "x", "p-2.png", RGB[:, ::-1])]

    def check():
        written = [n for n in os.listdir(tmp / "out") if not n.endswith("_overlay.png")]
        assert sorted(written) == [predict.MANIFEST, "p-2.png", "p-3.png", "p.png"]
    return lambda: _predict(tmp / "x", tmp / "y", "--out", tmp / "out"), inputs, check


def predict_over_a_users_probabilities(tmp):
    image = _png(tmp, "a.png")
    (tmp / "out").mkdir()
    (tmp / "out" / "a_probabilities.npy").write_text("mine")
    return (lambda: _predict(image, "--out", tmp / "out", "--probabilities"),
            [image, tmp / "out" / "a_probabilities.npy"])


def predict_output_is_a_link_to_a_users_file(tmp):
    image = _png(tmp, "a.png")
    precious = tmp / "precious.txt"
    precious.write_text("do not touch")
    (tmp / "out").mkdir()
    os.symlink(precious, tmp / "out" / "a_overlay.png")

    def check():
        assert _predict(image, "--out", tmp / "out", "--overwrite").startswith("exit 0")
        assert not os.path.islink(tmp / "out" / "a_overlay.png")  # the link was replaced
    return lambda: _predict(image, "--out", tmp / "out"), [image, precious], check


def predict_output_edited_since(tmp):
    image = _png(tmp, "a.png")
    assert _predict(image, "--out", tmp / "out").startswith("exit 0")
    edited = tmp / "out" / "a.png"
    Image.fromarray(np.ones(RGB.shape[:2], np.uint8)).save(edited)  # a hand-corrected mask
    return lambda: _predict(image, "--out", tmp / "out"), [image, edited]


def predict_a_folder_into_itself_twice(tmp):
    folder = tmp / "photos"
    folder.mkdir()
    Image.fromarray(RGB).save(folder / "a.jpg")
    assert _predict(folder, "--out", folder).startswith("exit 0")
    made = [folder / "a.png", folder / "a_overlay.png"]
    return lambda: _predict(folder, "--out", folder), [folder / "a.jpg"], lambda: [
        p.is_file() for p in made]


def image_16_bit(tmp):
    Image.fromarray((np.arange(20 * 24, dtype=np.uint16).reshape(20, 24) * 130)).save(tmp / "g.png")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(tmp / "mask.png")

    def run():
        pillow = read_image_array(str(tmp / "g.png"), 3)
        config = load_data_config(make_dataset(tmp / "d")[0])
        graph = make_decoder(config)(str(tmp / "g.png"), str(tmp / "mask.png"))[0].numpy()
        return "pillow and tensorflow agree" if np.array_equal(pillow, graph) else (
            f"differ: max {pillow.max()} vs {graph.max()}")
    return run, [tmp / "g.png", tmp / "mask.png"]


# --- verify and the training pipeline -----------------------------------------------


def _exif_dataset(tmp, mask_on_stored=False):
    """A JPEG stored sideways with EXIF orientation 6 and a mask drawn on it as viewers show it."""
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    upright_labels = labels(5)  # 24x32
    upright = np.repeat((upright_labels * 100).astype(np.uint8)[..., None], 3, -1)
    stored = np.rot90(upright, 1)  # what orientation 6 turns upright
    image = root / "train" / "train_000.png"
    image.unlink()
    _save_oriented(np.ascontiguousarray(stored), root / "train" / "train_000.jpg", 6, quality=98)
    if mask_on_stored:
        save_image(np.ascontiguousarray(np.rot90(upright_labels, 1)),
                   str(root / "trainannot" / "train_000.png"))
    else:
        save_image(upright_labels, str(root / "trainannot" / "train_000.png"))
    return config, root, upright_labels


def verify_exif_rotated_jpeg(tmp):
    config, root, upright_labels = _exif_dataset(tmp)

    def check():
        ds = build_dataset(load_data_config(config), "train", training=False, batch_size=1,
                           preprocessing=Preprocessing(mean=(0.0,) * 3, std=(1.0,) * 3))
        image, mask = next(iter(ds))
        image, mask = image.numpy()[0, :24, :32, 0], mask.numpy()[0, :24, :32]
        labelled = mask != 255
        assert np.array_equal(mask[labelled], upright_labels[labelled])
        agree = np.abs(image[labelled] - mask[labelled] * 100.0) < 30
        assert agree.mean() > 0.97  # the image lies under its labels (JPEG edges aside)
    return lambda: _verify(config), _dataset_files(root), check


def verify_exif_mask_drawn_on_the_stored_image(tmp):
    config, root, _ = _exif_dataset(tmp, mask_on_stored=True)
    return lambda: _verify(config), _dataset_files(root)


def pipeline_exif_mask_drawn_on_the_stored_image(tmp):
    config, root, _ = _exif_dataset(tmp, mask_on_stored=True)
    return lambda: _pipeline(config), _dataset_files(root)


def verify_png_mask_with_exif(tmp):
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    mask = root / "trainannot" / "train_001.png"
    ids = np.asarray(Image.open(mask))
    _save_oriented(np.ascontiguousarray(np.rot90(ids, -1)), mask, 8)  # 8 turns it back
    return lambda: _verify(config), _dataset_files(root)


def verify_jpeg_masks(tmp):
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    mask = root / "trainannot" / "train_001.png"
    mask.unlink()
    Image.fromarray(labels(1)).save(root / "trainannot" / "train_001.jpg", quality=90)
    return lambda: _verify(config), _dataset_files(root)


def training_with_jpeg_masks(tmp):
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    Image.fromarray(labels(1)).save(root / "trainannot" / "train_001.jpg", quality=90)
    (root / "trainannot" / "train_001.png").unlink()
    return lambda: _check(config), _dataset_files(root)


def verify_jpeg_content_named_png(tmp):
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    Image.fromarray(labels(1)).save(root / "trainannot" / "train_001.png", format="JPEG")
    return lambda: _verify(config), _dataset_files(root)


def _all_ignore(tmp):
    config, root = _dataset(tmp, counts={"train": 3, "val": 2},
                            label_fn=lambda seed: np.full((24, 32), 255, np.uint8))
    return config, root


def verify_all_ignore_split(tmp):
    config, root = _all_ignore(tmp)
    return lambda: _verify(config), _dataset_files(root)


def training_on_an_all_ignore_split(tmp):
    config, root = _all_ignore(tmp)
    return lambda: _pipeline(config), _dataset_files(root)


def check_dataset_all_ignore(tmp):
    config, root = _all_ignore(tmp)
    return lambda: _check(config), _dataset_files(root)


def pipeline_image_over_the_pixel_limit(tmp):
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    _set_data(config, max_image_pixels=500)
    return lambda: _pipeline(config, "val", training=False), _dataset_files(root)


def verify_image_over_the_pixel_limit(tmp):
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    _huge_png(root / "train" / "train_001.png", 30000, 30000)
    return lambda: _verify(config), _dataset_files(root)


def verify_palette_ids_out_of_range(tmp):
    config, root = _dataset(tmp, encoding="palette", counts={"train": 2, "val": 1})
    ids = np.zeros((24, 32), np.uint8)
    ids[3, 3] = 77
    mask = Image.fromarray(ids, "P")
    mask.putpalette([0, 0, 0] * 256)
    mask.save(root / "trainannot" / "train_001.png")
    return lambda: _verify(config), _dataset_files(root)


def verify_mask_of_another_size(tmp):
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    save_image(np.zeros((20, 32), np.uint8), str(root / "trainannot" / "train_001.png"))
    return lambda: _verify(config), _dataset_files(root)


def verify_broken_symlink(tmp):
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    image = root / "train" / "train_000.png"
    image.unlink()
    os.symlink(tmp / "nowhere.png", image)
    return lambda: _verify(config), _dataset_files(root)


def verify_folder_named_like_an_image(tmp):
    config, root = _dataset(tmp, counts={"train": 2, "val": 1})
    image = root / "train" / "train_000.png"
    image.unlink()
    image.mkdir()
    return lambda: _verify(config), _dataset_files(root)


# --- weights ------------------------------------------------------------------------


def _pth(tmp, obj, storages, name="w.pth", **options):
    return torch_writer.save(str(tmp / name), obj, storages, **options)


def pth_stride_zero_view(tmp):
    path = _pth(tmp, {"w": torch_writer.Tensor("0", 0, (25000, 25000), (0, 0))},
                {"0": np.ones(1, np.float32)})
    return lambda: _load(path), [path]


def pth_member_that_inflates(tmp):
    """A 100 KB .pth whose deflated storage inflates to 80 MiB (a zip bomb in small)."""
    storages = {"0": np.zeros(20 << 20, np.float32)}
    obj = {"w": torch_writer.Tensor("0", 0, (20 << 20,), (1,))}
    pickled = torch_writer._Emitter(storages, legacy=False).pickle(obj)
    path = tmp / "bomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", storages["0"].tobytes())
    assert path.stat().st_size < 200_000
    return lambda: _load(str(path)), [path]


def pth_legacy_storage_longer_than_the_file(tmp):
    class Huge:  # what the writer needs of a storage: its dtype and element count
        dtype, size = np.dtype("float32"), 2**40

    path = tmp / "legacy.pth"
    with open(path, "wb") as handle:
        handle.write(pickle.dumps(torch_writer.LEGACY_MAGIC, protocol=2))
        handle.write(pickle.dumps(1001, protocol=2))
        handle.write(pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
        handle.write(torch_writer._Emitter({"0": Huge()}, legacy=True).pickle(
            {"w": torch_writer.Tensor("0", 0, (1,), (1,))}))
        handle.write(pickle.dumps(["0"], protocol=2))
        handle.write(struct.pack("<q", 2**40) + b"\0" * 16)
    return lambda: _load(str(path)), [path]


def _raw_pickle_pth(tmp, pickled):
    path = tmp / "raw.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/byteorder", "little")
    return str(path)


def pth_list_that_contains_itself(tmp):
    path = _raw_pickle_pth(tmp, b"\x80\x02]q\x00h\x00a.")
    return lambda: _load(path), [path]


def pth_deep_nesting(tmp):
    path = _raw_pickle_pth(tmp, b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b".")
    return lambda: _load(path), [path]


def pth_zero_sized_tensor_with_huge_dimensions(tmp):
    path = _pth(tmp, {"w": torch_writer.Tensor("0", 0, (0, 2**62, 2**62), (1, 1, 1))},
                {"0": np.zeros(1, np.float32)})
    return lambda: _load(path), [path]


def pth_wrong_magic(tmp):
    (tmp / "w.pth").write_bytes(b"\x80\x02}q\x00." * 4)
    return lambda: _load(str(tmp / "w.pth")), [tmp / "w.pth"]


def pth_empty(tmp):
    (tmp / "e.pth").write_bytes(b"")
    return lambda: _load(str(tmp / "e.pth")), [tmp / "e.pth"]


def npz_header_larger_than_its_data(tmp):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"
    header = header.ljust(117) + "\n"
    with zipfile.ZipFile(tmp / "b.npz", "w") as archive:
        archive.writestr("conv1_1.weight.npy", b"\x93NUMPY\x01\x00"
                         + struct.pack("<H", len(header)) + header.encode() + b"\0" * 64)
    return lambda: _load(str(tmp / "b.npz")), [tmp / "b.npz"]


def h5_dataset_larger_than_the_file(tmp):
    path = tmp / "vgg16_weights.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [b"block1_conv1"]
        group = handle.create_group("block1_conv1")
        group.attrs["weight_names"] = [b"block1_conv1/kernel:0"]
        group.create_dataset("block1_conv1/kernel:0", shape=(100000, 100000), dtype="f4",
                             chunks=(1000, 1000))  # nothing written: the file stays small
    return lambda: _load(str(path)), [path]


def mat_that_is_hdf5(tmp):
    path = tmp / "imagenet-vgg-verydeep-16.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["layers"] = np.zeros(3)
    with open(path, "r+b") as handle:
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" "))
    return lambda: _load(str(path)), [path]


def weights_path_is_a_folder(tmp):
    return lambda: _load(str(tmp)), [tmp]


def weights_path_is_a_pipe(tmp):
    os.mkfifo(tmp / "w.pth")
    return lambda: _load(str(tmp / "w.pth")), [tmp / "w.pth"]


def load_weights_path_none(tmp):
    return lambda: _load(None), []


def load_weights_empty_path(tmp):
    return lambda: _load(""), []


def load_weights_model_none(tmp):
    path = _pth(tmp, {"w": torch_writer.Tensor("0", 0, (1,), (1,))}, {"0": np.ones(1, np.float32)})
    return lambda: _load(path, model=None), [path]


def _imagenet_setup(tmp, monkeypatch):
    """KERAS_HOME in tmp, no FCN_TF_WEIGHTS_DIR, downloads to a closed port on 127.0.0.1."""
    monkeypatch.setenv("KERAS_HOME", str(tmp / "keras"))
    monkeypatch.delenv(imagenet.WEIGHTS_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(imagenet, "URL_BASE", "http://127.0.0.1:9/")
    model = fcn_tf.build_model("fcn32s", 3, backbone="vgg16", width_multiplier=1 / 16)
    return model, imagenet.imagenet_file(model)


def _imagenet(model):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        message = _load("imagenet", model)
    return f"{err.getvalue()}{message}"


def imagenet_cache_file_with_a_wrong_hash(tmp, monkeypatch):
    model, entry = _imagenet_setup(tmp, monkeypatch)
    cached = tmp / "keras" / "models" / entry.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a file someone put here")
    aside = cached.parent / (entry.name + ".bad-hash")

    def check():
        assert aside.read_bytes() == b"a file someone put here"
    return lambda: _imagenet(model), [], check


def imagenet_weights_dir_missing(tmp, monkeypatch):
    model, _ = _imagenet_setup(tmp, monkeypatch)
    monkeypatch.setenv(imagenet.WEIGHTS_DIR_VARIABLE, str(tmp / "typo"))
    return lambda: _imagenet(model), []


def imagenet_weights_dir_file_with_a_wrong_hash(tmp, monkeypatch):
    model, entry = _imagenet_setup(tmp, monkeypatch)
    monkeypatch.setenv(imagenet.WEIGHTS_DIR_VARIABLE, str(tmp / "w"))
    (tmp / "w").mkdir()
    (tmp / "w" / entry.name).write_bytes(b"another network")
    return lambda: _imagenet(model), [tmp / "w" / entry.name]


def imagenet_read_only_cache(tmp, monkeypatch):
    model, _ = _imagenet_setup(tmp, monkeypatch)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", kwargs.get("dir"))
    monkeypatch.setattr(imagenet.tempfile, "mkstemp", refuse)
    return lambda: _imagenet(model), []


CASES = [
    # The hostile-user sweep (issue 26).
    Case("predict into its own input folder", "predict", predict_into_input_folder,
         r"exit 2\n.*--out .*would write over 1 of its inputs.*img\.png.*even with --overwrite"),
    Case("predict over a user's file in --out", "predict", predict_over_a_users_file,
         r"would write over 1 file\(s\) it did not make:\n  .*a\.png\nNothing was written. "
         r"Pass --overwrite"),
    Case("PNG header of 30000x30000", "predict", predict_huge_png_header,
         r"big\.png: 30000x30000 pixels .*900,000,000 pixels.* over the limit of 100,000,000"
         r".*nothing was decoded\. --max-image-pixels sets the limit"),
    Case(".pth stride-0 view of 25000x25000 over one element", "weights", pth_stride_zero_view,
         r"refused to load: a tensor of size \(25000, 25000\) with stride \(0, 0\) has "
         r"625,000,000 elements over a storage of 1"),
    Case(".pth deflated member inflating 800x", "weights", pth_member_that_inflates,
         r"storage '0' .*declares 83,886,080 bytes.*more than 67,108,864 bytes.*Nothing was "
         r"allocated"),
    Case("EXIF orientation 6 JPEG, mask as a viewer shows it", "verify",
         verify_exif_rotated_jpeg,
         r"1 image\(s\) and 0 mask\(s\) turned upright.*\n\nNo problems found"),
    Case("EXIF-rotated pair, mask drawn on the stored image", "verify",
         verify_exif_mask_drawn_on_the_stored_image,
         r"\[size_mismatch\] train: image 24x32 \(stored 32x24, EXIF orientation 6 applied\) vs "
         r"mask 32x24 \(HxW\); images and masks are both turned upright by their EXIF"),
    Case("EXIF-rotated pair, mask drawn on the stored image", "pipeline",
         pipeline_exif_mask_drawn_on_the_stored_image,
         r"DatasetError: .*train_000\.jpg <-> .*train_000\.png: image 24x32 \(stored 32x24, "
         r"EXIF orientation 6 applied\)"),
    Case("JPEG mask", "verify", verify_jpeg_masks,
         r"\[lossy_mask\] train: mask stored in a lossy format \(JPEG\).*\n.*train_001\.jpg"),
    Case("JPEG mask", "check_dataset (training)", training_with_jpeg_masks,
         r"DatasetError: Dataset check failed:\n.*\[lossy_mask\].*train_001\.jpg"),
    Case("every mask all ignore", "verify", verify_all_ignore_split,
         r"\[no_labels\] train: all 3 mask\(s\) read hold only the ignore label 255"),
    Case("every mask all ignore", "training pipeline", training_on_an_all_ignore_split,
         r"DatasetError: .*\[no_labels\] train: .*training refuses this split"),
    Case("every mask all ignore", "check_dataset (training)", check_dataset_all_ignore,
         r"\[no_labels\] train: .*\n(.*\n)*.*\[no_labels\] val:"),
    Case("Keras-cache ImageNet file with a wrong hash", "weights",
         imagenet_cache_file_with_a_wrong_hash,
         r"warning: .*\.h5 had the wrong md5 .*kept as .*\.h5\.bad-hash, downloading it again"),
    Case("$FCN_TF_WEIGHTS_DIR naming a missing folder", "weights", imagenet_weights_dir_missing,
         r"\$FCN_TF_WEIGHTS_DIR is '.*typo', which is not a folder"),
    Case("read-only Keras cache", "weights", imagenet_read_only_cache,
         r"Cannot write into the Keras cache folder .*keras/models to download .*\(Permission "
         r"denied\)\. Set KERAS_HOME to a writable folder"),
    Case("load_weights(model, None)", "weights", load_weights_path_none,
         r"load_weights: path must be a weights file path or 'imagenet', received None"),
    # Our own sweep.
    Case("PNG with 16-bit pixels", "decode", image_16_bit, r"pillow and tensorflow agree"),
    Case("JPEG header of 60000x60000", "predict", predict_huge_jpeg_header,
         r"j\.jpg: 60000x60000 pixels .*over the limit"),
    Case("folder named like an image in an input folder", "predict",
         predict_folder_named_like_an_image, r"exit 0\n.*a\.png \(24x20, whole image\)"),
    Case("empty image file", "predict", predict_empty_file,
         r"e\.png: not a readable image \(an empty file \(0 bytes\)\)"),
    Case("truncated PNG", "predict", predict_truncated_png, r"t\.png: not a readable image"),
    Case("text file named .png", "predict", predict_text_named_png,
         r"not an image Pillow can read \(the file starts with b'hello, I am '\)"),
    Case("RGBA image", "predict", predict_rgba_image, r"exit 0"),
    Case("symbolic link loop as INPUT", "predict", predict_symlink_loop,
         r"loop\.png: not a readable image \(.*Too many levels of symbolic links"),
    Case("named pipe in an input folder", "predict", predict_pipe_in_folder,
         r"exit 1\n(.*\n)*  .*b\.png: not a regular file \(a pipe, socket or device\)"),
    Case("spaces and non-ASCII names", "predict", predict_unicode_names, r"exit 0"),
    Case("--out is a file", "predict", predict_out_is_a_file, r"--out .*out is a file"),
    Case("output stems collide across folders", "predict", predict_stems_that_collide,
         r"exit 0"),
    Case("a user's NAME_probabilities.npy in --out", "predict",
         predict_over_a_users_probabilities, r"did not make:\n  .*a_probabilities\.npy"),
    Case("output name is a link to a user's file", "predict",
         predict_output_is_a_link_to_a_users_file, r"did not make:\n  .*a_overlay\.png"),
    Case("predicted mask corrected by hand since", "predict", predict_output_edited_since,
         r"a\.png \(predict wrote it, but it changed since\)"),
    Case("a folder predicted into itself twice", "predict", predict_a_folder_into_itself_twice,
         r"Left out 2 file\(s\) an earlier predict wrote into an INPUT folder"),
    Case("palette mask with ids out of range", "verify", verify_palette_ids_out_of_range,
         r"\[bad_labels\] train: label values \[77\]"),
    Case("mask of another size", "verify", verify_mask_of_another_size,
         r"\[size_mismatch\] train: image 24x32 vs mask 20x32 \(HxW\)\n"),
    Case("PNG mask with an EXIF orientation", "verify", verify_png_mask_with_exif,
         r"0 image\(s\) and 1 mask\(s\) turned upright(.*\n)*No problems found"),
    Case("JPEG bytes in a mask named .png", "verify", verify_jpeg_content_named_png,
         r"\[lossy_mask\] .*\(JPEG\)"),
    Case("image over data.max_image_pixels", "pipeline", pipeline_image_over_the_pixel_limit,
         r"image over the pixel limit: 32x24 pixels .*data\.max_image_pixels sets the limit"),
    Case("PNG header of 30000x30000 in a dataset", "verify", verify_image_over_the_pixel_limit,
         r"\[too_large\] train: image over the pixel limit: 30000x30000"),
    Case("broken symbolic link as an image", "verify", verify_broken_symlink,
         r"\[unreadable\] train: cannot decode image: a symbolic link to a missing file"),
    Case("folder named like an image in a dataset", "verify", verify_folder_named_like_an_image,
         r"\[unreadable\] train: cannot decode image: a folder, not an image file"),
    Case(".pth legacy storage longer than the file", "weights",
         pth_legacy_storage_longer_than_the_file,
         r"storage '0' declares 1,099,511,627,776 x torch\.FloatStorage .*only 16 bytes"),
    Case(".pth list that contains itself", "weights", pth_list_that_contains_itself,
         r"nested more than 64 levels deep, or one that contains itself"),
    Case(".pth nested 200000 levels", "weights", pth_deep_nesting,
         r"nested more than 64 levels deep"),
    Case(".pth zero-sized tensor of size (0, 2**62, 2**62)", "weights",
         pth_zero_sized_tensor_with_huge_dimensions, r"a dimension over 2,147,483,647"),
    Case(".pth with a wrong magic", "weights", pth_wrong_magic, r"not a PyTorch file"),
    Case("empty .pth", "weights", pth_empty, r"an empty file \(0 bytes\)"),
    Case(".npz header of (100000, 100000) over 64 bytes", "weights",
         npz_header_larger_than_its_data,
         r"array 'conv1_1\.weight' declares shape \(100000, 100000\).*holds 192"),
    Case("HDF5 dataset of (100000, 100000) never written", "weights",
         h5_dataset_larger_than_the_file,
         r"dataset .*kernel:0' of shape \(100000, 100000\) .*declares 40,000,000,000 bytes"),
    Case(".mat that is MATLAB v7.3 (HDF5)", "weights", mat_that_is_hdf5,
         r"MATLAB v7\.3 \(HDF5\) file"),
    Case("weights path is a folder", "weights", weights_path_is_a_folder, r"is a directory"),
    Case("weights path is a named pipe", "weights", weights_path_is_a_pipe,
         r"not a regular file \(a pipe, socket or device\)"),
    Case("load_weights(model, '')", "weights", load_weights_empty_path,
         r"load_weights: path is an empty string"),
    Case("load_weights(None, file)", "weights", load_weights_model_none,
         r"load_weights: model must be a Keras model .*received NoneType"),
    Case("$FCN_TF_WEIGHTS_DIR holding another file under the name", "weights",
         imagenet_weights_dir_file_with_a_wrong_hash,
         r"in \$FCN_TF_WEIGHTS_DIR\) has the wrong md5 .*Replace it"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.surface}: {c.kind}")
def test_hostile_input(case, tmp_path, monkeypatch):
    needs_monkeypatch = "monkeypatch" in case.make.__code__.co_varnames[
        :case.make.__code__.co_argcount]
    made = case.make(tmp_path, monkeypatch) if needs_monkeypatch else case.make(tmp_path)
    run, protected, check = (*made, None) if len(made) == 2 else made
    before = {str(p): _digest(p) for p in protected}
    answer = run()
    assert re.search(case.expect, answer, re.DOTALL), answer
    assert {str(p): _digest(p) for p in protected} == before
    if check is not None:
        check()


def test_every_row_is_a_kind_of_its_own():
    keys = [(c.kind, c.surface) for c in CASES]
    assert len(set(keys)) == len(keys)
