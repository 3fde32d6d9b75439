"""The run configuration: one commented-JSON file mapped onto strict dataclasses.

The generic parts (the commented-JSON reader and the dataclass schema) live
in :mod:`fcn_tf.utils.jsonc` and :mod:`fcn_tf.utils.schema`, below the
``data`` package whose section the run config holds; the run config itself
is :mod:`fcn_tf.config.run_config`.
"""

from fcn_tf.utils.jsonc import load_jsonc, loads_jsonc
from fcn_tf.utils.schema import ConfigError, parse_section, to_dict

__all__ = ["ConfigError", "load_jsonc", "loads_jsonc", "parse_section", "to_dict"]
