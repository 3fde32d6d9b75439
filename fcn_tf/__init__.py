"""fcn_tf: semantic segmentation networks for TensorFlow 2 / Keras 3.

Example:
    >>> import fcn_tf
    >>> "fcn8s" in fcn_tf.list_models()
    True
"""

__version__ = "0.1.0"

import os as _os

# Quiet TensorFlow's C++ start-up log unless the user asked for it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fcn_tf.models import (  # noqa: E402
    build_model,
    default_preprocessing,
    list_backbones,
    list_models,
)
from fcn_tf.preprocessing import Preprocessing  # noqa: E402
from fcn_tf.weights import load_weights  # noqa: E402
from fcn_tf.weights.from_pytorch import from_pytorch  # noqa: E402

__all__ = [
    "Preprocessing",
    "build_model",
    "default_preprocessing",
    "from_pytorch",
    "list_backbones",
    "list_models",
    "load_weights",
]
