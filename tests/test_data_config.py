"""The "data" config section: strict keys, defaults per format, clear errors."""

import json
import os

import pytest

from fcn_tf.config import ConfigError
from fcn_tf.data import DataConfig, dataset_info, load_data_config, parse_data_config
from fcn_tf.data.palette import VOC_CLASS_NAMES, voc_colormap


def _write(tmp_path, document):
    path = os.path.join(tmp_path, "config.json")
    with open(path, "w") as f:
        f.write(document if isinstance(document, str) else json.dumps(document))
    return path


def test_reads_only_the_data_section_and_resolves_paths(tmp_path):
    path = _write(tmp_path, """{
      // other sections belong to other modules and are ignored here
      "model": {"name": "unet", "anything": 1},
      "train": {"epochs": 3},
      "data": {"format": "camvid", "root": "../camvid", "num_classes": 11, /* void */ "ignore_values": [11]}
    }""")
    config = load_data_config(path)
    assert config.root == os.path.normpath(os.path.join(tmp_path, "..", "camvid"))
    assert config.mask_encoding == "ids" and config.ignore_values == [11]
    assert len(config.class_names) == 11 and len(config.colors) == 11


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="Unknown key 'crop' in 'data'.*Did you mean 'crop_size'"):
        parse_data_config({"crop": [64, 64]})
    with pytest.raises(ConfigError, match="'data.augment'.*Did you mean 'rotation'"):
        parse_data_config({"augment": {"rotate": 5}})


@pytest.mark.parametrize("data, message", [
    ({"format": "vok", "root": "x"}, "Did you mean 'voc'"),
    ({"format": "folders"}, "data.root"),
    ({"format": "folders", "root": "x"}, "data.num_classes"),
    ({"format": "camvid", "root": "x", "num_classes": 3, "class_names": ["a", "b"]}, "expected 3 entries"),
    ({"format": "camvid", "root": "x", "num_classes": 3, "ignore_label": 2}, "is a class id"),
    ({"augment": {"scale": [2.0, 0.5]}}, "min <= max"),
    ({"crop_size": [64]}, "list of 2 values"),
    ({"image_channels": 4}, "expected one of 1, 3"),
    ({"format": "folders", "root": "x", "mask_encoding": "binary", "num_classes": 3}, "binary"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_data_config(data)


def test_format_defaults():
    voc = DataConfig(format="voc", root="VOC2012")
    assert voc.mask_encoding == "palette" and voc.num_classes == 21
    info = dataset_info(voc)
    assert info.class_names == VOC_CLASS_NAMES and list(info.colors) == voc_colormap(21)
    binary = DataConfig(format="folders", root="x", mask_encoding="binary")
    assert binary.num_classes == 2
    builtin = parse_data_config({}, base_dir="/somewhere")
    assert builtin.root == os.path.join("/somewhere", "data", "builtin")
    assert builtin.class_names[0] == "background" and builtin.num_classes == 5
    other = dataset_info(DataConfig(format="camvid", root="x", num_classes=4))
    assert len(set(other.colors)) == 4


def test_repo_data_configs_parse():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    camvid = load_data_config(os.path.join(here, "configs", "data", "camvid.json"))
    assert camvid.num_classes == 11 and camvid.ignore_values == [11]
    membrane = load_data_config(os.path.join(here, "configs", "data", "membrane.json"))
    assert membrane.mask_encoding == "binary" and membrane.image_channels == 1
