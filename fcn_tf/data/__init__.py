"""Data: files on disk -> ``tf.data`` batches, plus the dataset verifier.

Public API (see docs/DATA.md):

- :class:`DataConfig`, :func:`load_data_config` -- the "data" config section;
- :class:`DatasetInfo`, :func:`dataset_info` -- classes, names, colours, ignore label;
- :func:`build_dataset` -- the training / evaluation pipeline;
- :func:`build_training_epochs` -- many training epochs over one decoded cache;
- :func:`split_files`, :func:`split_names` -- (image, mask) pairs of a split;
- :func:`check_dataset` (cheap, raises :class:`DatasetError`), :func:`verify`
  and :func:`format_report` -- dataset checks;
- :func:`class_pixel_frequencies`, :func:`median_frequency_weights`;
- :func:`ensure_builtin_dataset` -- the generated "shapes" dataset.
"""

from fcn_tf.data.builtin import ensure_builtin_dataset
from fcn_tf.data.config import (
    AugmentConfig,
    ColorMapEntry,
    DataConfig,
    SplitConfig,
    load_data_config,
    parse_data_config,
)
from fcn_tf.data.formats import DatasetError, split_files, split_names
from fcn_tf.data.pipeline import DatasetInfo, build_dataset, build_training_epochs, dataset_info
from fcn_tf.data.verify import (
    VerifyReport,
    check_dataset,
    class_pixel_frequencies,
    format_report,
    median_frequency_weights,
    verify,
)

__all__ = [
    "AugmentConfig",
    "ColorMapEntry",
    "DataConfig",
    "DatasetError",
    "DatasetInfo",
    "SplitConfig",
    "VerifyReport",
    "build_dataset",
    "build_training_epochs",
    "check_dataset",
    "class_pixel_frequencies",
    "dataset_info",
    "ensure_builtin_dataset",
    "format_report",
    "load_data_config",
    "median_frequency_weights",
    "parse_data_config",
    "split_files",
    "split_names",
    "verify",
]
