"""Configuration: commented JSON files mapped onto strict dataclasses."""

from fcn_tf.config.jsonc import load_jsonc, loads_jsonc
from fcn_tf.config.schema import ConfigError, parse_section, to_dict

__all__ = ["ConfigError", "load_jsonc", "loads_jsonc", "parse_section", "to_dict"]
