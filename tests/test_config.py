"""Config files: comments, strict sections, overrides, path resolution, and bad input."""

import dataclasses
import json
import re
import typing

import pytest

from fcn_tf.config import ConfigError, loads_jsonc
from fcn_tf.config.run_config import SECTIONS, apply_overrides, load_config, parse_config
from fcn_tf.data import DataConfig
from fcn_tf.losses import LOSSES, loss_parameters
from fcn_tf.precision import PRECISIONS
from fcn_tf.utils.jsonc import JSONCError


def test_all_three_comment_styles_and_trailing_commas():
    text = """
    {
      // line comment
      "a": 1, # hash comment
      /* block
         comment */ "b": "not // a comment # nor this /* either */",
      "c": [1, 2,],
    }
    """
    assert loads_jsonc(text) == {
        "a": 1, "b": "not // a comment # nor this /* either */", "c": [1, 2],
    }


def test_json_error_names_file_and_line():
    with pytest.raises(JSONCError, match=r"my.json: invalid JSON at line 3"):
        loads_jsonc('{\n "a": 1\n "b": 2\n}', source="my.json")


def test_unterminated_block_comment():
    with pytest.raises(JSONCError, match="Unterminated /\\* comment starting on line 2"):
        loads_jsonc('{\n/* open\n "a": 1}', source="x.json")


def test_unknown_key_suggests_closest():
    with pytest.raises(
        ConfigError,
        match=r"Unknown key 'learning_rte' in 'train'. Did you mean 'learning_rate'\?",
    ):
        parse_config({"train": {"learning_rte": 0.1}})


def test_unknown_section_suggests_closest():
    with pytest.raises(ConfigError, match=r"Unknown section 'trian'.*Did you mean 'train'"):
        parse_config({"trian": {}})


def test_unknown_nested_key():
    with pytest.raises(ConfigError, match=r"Unknown key 'wieght' in 'train.loss.terms\[0\]'"):
        parse_config({"train": {"loss": {"terms": [{"name": "dice", "wieght": 1}]}}})


@pytest.mark.parametrize(
    "section,value,message",
    [
        ({"train": {"epochs": "ten"}}, None, r"train.epochs: expected an integer, received 'ten'"),
        ({"train": {"epochs": 0}}, None, r"train.epochs: must be >= 1, received 0"),
        ({"train": {"optimizer": "sdg"}}, None, r"train.optimizer: expected one of .*Did you mean 'sgd'"),
        ({"train": {"jit_compile": "yes"}}, None, r"train.jit_compile: expected true or false or 'auto', received 'yes'"),
        ({"train": {"loss": {"class_weights": "inverse"}}}, None, r"class_weights: expected null"),
        ({"data": {"crop_size": [64]}}, None, r"data.crop_size: expected a list of 2 values"),
    ],
)
def test_wrong_types_and_ranges_name_the_key(section, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(section)


def test_paths_resolve_against_the_config_folder(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "c.json"
    path.write_text(json.dumps({
        "model": {"weights": "../weights/vgg.mat"},
        "data": {"format": "camvid", "root": "data/camvid", "num_classes": 11},
        "output": {"dir": "runs"},
    }))
    config = load_config(path)
    assert config.model.weights == str(tmp_path / "weights" / "vgg.mat")
    assert config.data.root == str(folder / "data" / "camvid")
    assert config.output.dir == str(folder / "runs")


def test_overrides_are_typed_and_validated(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{}")
    config = load_config(path, ["train.epochs=3", "model.options.base_filters=8",
                                "train.optimizer=sgd", "eval.scales=[0.5,1.0]"])
    assert config.train.epochs == 3
    assert config.model.options == {"base_filters": 8}
    assert config.train.optimizer == "sgd"
    assert config.eval.scales == [0.5, 1.0]
    with pytest.raises(ConfigError, match=r"c.json: train.epochs: expected an integer"):
        load_config(path, ["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"expected section.key=value"):
        apply_overrides({}, ["epochs"])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_config(tmp_path / "nope.json")


def test_effective_config_round_trips():
    config = parse_config({"train": {"epochs": 2}, "model": {"options": {"base_filters": 4}}})
    again = parse_config(json.loads(json.dumps(config.to_dict())))
    assert again.to_dict() == config.to_dict()


def _shipped_configs():
    import glob
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [os.path.join(root, "config.json")] + sorted(
        glob.glob(os.path.join(root, "configs", "**", "*.json"), recursive=True)
    )


@pytest.mark.parametrize("path", _shipped_configs(), ids=lambda p: p.rsplit("/", 2)[-1])
def test_every_shipped_config_is_valid(path):
    import fcn_tf
    from fcn_tf.training.setup import output_channels

    config = load_config(path)
    # The model section must name a buildable model with valid options.
    from fcn_tf.models.registry import validate_model_arguments

    validate_model_arguments(config.model.name, output_channels(config), config.model.backbone,
                             config.model.options)
    assert config.model.name in fcn_tf.list_models()


def test_a_key_given_twice_is_refused_naming_it_and_both_lines():
    text = """{
      "train": {"loss": {"terms": [
        {"name": "dice"},
        {"name": "dice", "weight": 1,
         "name": "focal"}  // the second "name" of one term
      ]}},
      "data": {"augment": {"flip": true}, "augment": {"flip": false}}
    }"""
    with pytest.raises(JSONCError, match=r"c.json: key 'train.loss.terms\[1\].name' appears "
                                         r"twice \(lines 4 and 5\)"):
        loads_jsonc(text, source="c.json")
    with pytest.raises(JSONCError, match=r"key 'data.augment' appears twice \(lines 7 and 7\)"):
        loads_jsonc(text.replace('"name": "focal"', '"other": 2'), source="c.json")
    # The same key in two different objects is no repetition.
    assert loads_jsonc('{"a": {"x": 1}, "b": {"x": 2}}') == {"a": {"x": 1}, "b": {"x": 2}}


def test_a_byte_order_mark_is_read_and_a_non_object_is_refused(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(b'\xef\xbb\xbf// saved by a Windows editor\n{"train": {"epochs": 2}}')
    assert load_config(path).train.epochs == 2
    path.write_text("[1, 2]")
    with pytest.raises(JSONCError, match=r"c.json: expected a JSON object \{...\} at top level, "
                                         "received a list"):
        load_config(path, ["train.epochs=1"])


def _every_key(cls, prefix):
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key = f"{prefix}.{field.name}"
        yield key
        if dataclasses.is_dataclass(hints[field.name]):
            yield from _every_key(hints[field.name], key)


def _nested(key, value):
    document = value
    for part in reversed(key.split(".")):
        document = {part: document}
    return document


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_infinity_are_refused_for_every_key_of_every_section(value):
    sections = dict(SECTIONS, data=DataConfig)
    keys = [key for name, cls in sections.items() for key in _every_key(cls, name)]
    keys += ["train.loss.terms[0].weight", "model.options.base_filters"]
    assert "train.learning_rate" in keys and "data.augment.brightness" in keys
    accepted = []
    for key in keys:
        document = _nested(key.replace("[0]", ""), value)
        if "[0]" in key:
            document = {"train": {"loss": {"terms": [{"weight": value}]}}}
        try:
            parse_config(document)
        except ConfigError as error:
            if f"{key}: expected a finite number, received {value}" not in str(error):
                accepted.append(f"{key}: {error}")
        else:
            accepted.append(f"{key}: accepted")
    assert accepted == []


def test_numbers_inside_nested_lists_are_bounded_and_named():
    colours = [[0, 0, 0], [300, 0, 0], [0, 0, 255]]
    with pytest.raises(ConfigError, match=r"data.colors\[1\]\[0\]: must be <= 255, received 300 "
                                          r"\(in \[\[0, 0, 0\], \[300, 0, 0\], \[0, 0, 255\]\]\)"):
        parse_config({"data": {"format": "camvid", "root": "x", "num_classes": 3,
                               "colors": colours}})
    with pytest.raises(ConfigError, match=r"eval.scales: expected at least 1 value"):
        parse_config({"eval": {"scales": []}})
    with pytest.raises(ConfigError, match=r"train.learning_rate: must be > 0.0, received 0.0"):
        parse_config({"train": {"learning_rate": 0}})
    # "X or null" given a non-null value says what is wrong with it as an X.
    with pytest.raises(ConfigError, match=r"^eval.window: expected a list of 2 values, "
                                          r"received \[8\]\.$"):
        parse_config({"eval": {"window": [8]}})


@pytest.mark.parametrize("name, problem", [
    ("", "it names no folder of its own"), (".", "it names no folder of its own"),
    ("..", "it names no folder of its own"), ("a/b", "it holds a path separator"),
    ("a\\b", "it holds a path separator"), ("a\tb", "it holds a control character"),
    ("x" * 201, "longer than 200 bytes")])
def test_output_name_must_be_one_plain_folder_name(name, problem):
    with pytest.raises(ConfigError, match=rf"output.name: expected one folder name .*"
                                          rf"{re.escape(problem)}"):
        parse_config({"output": {"name": name}})
    assert parse_config({"output": {"name": "run.2024-01 (lr 0.1)"}}).output.name


def test_set_into_a_null_section_and_refused_set_forms(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"eval": null}')
    assert load_config(path, ["eval.flip=true"]).eval.flip is True
    for item, message in ((".epochs=3", "expected section.key=value"),
                          ("train..epochs=3", "expected section.key=value"),
                          ("model.name.x=1", "'name' is not a section (it holds 'unet')")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(path, ["model.name=unet", item] if "name.x" in item else [item])


def test_precision_and_loss_choices_are_those_of_their_modules():
    with pytest.raises(ConfigError, match="train.precision: expected one of 'auto', "
                       + ", ".join(repr(p) for p in PRECISIONS) + ", received 'bf16'"):
        parse_config({"train": {"precision": "bf16"}})
    with pytest.raises(ConfigError, match="expected one of "
                       + ", ".join(repr(name) for name in LOSSES) + ", received 'focl'. "
                       "Did you mean 'focal'"):
        parse_config({"train": {"loss": {"terms": [{"name": "focl"}]}}})
    loss = parse_config({"train": {"loss": {"focal_gamma": 1.0}}}).train.loss
    assert loss.parameters() == {key: p.default for key, p in loss_parameters().items()} | {
        "focal_gamma": 1.0}
    with pytest.raises(ConfigError, match=r"train.loss.bootstrap_fraction: must be > 0.0"):
        parse_config({"train": {"loss": {"bootstrap_fraction": 0}}})
