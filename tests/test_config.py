"""Config files: comments, strict sections, overrides and path resolution."""

import json

import pytest

from fcn_tf.config import ConfigError, loads_jsonc
from fcn_tf.utils.jsonc import JSONCError
from fcn_tf.config.run_config import apply_overrides, load_config, parse_config


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
