"""fcn_tf: semantic segmentation networks for TensorFlow 2 / Keras 3.

The names below are imported on first use, so ``import fcn_tf.serve.load``
or ``fcn_tf.utils.cli`` does not import TensorFlow.

Example:
    >>> import fcn_tf
    >>> "fcn8s" in fcn_tf.list_models()
    True
"""

from fcn_tf.utils.lazy import lazy_exports as _lazy_exports
from fcn_tf.utils.logs import quiet_tensorflow_for_tools as _quiet_tensorflow_for_tools

__version__ = "0.1.0"

# `python -m fcn_tf.<tool>`: TensorFlow's C++ start-up notices stay out of the
# log (fcn_tf.utils.logs). Python runs this file before any module of the
# package, so before any of them imports TensorFlow.
_quiet_tensorflow_for_tools()

_EXPORTS = {
    "Preprocessing": "fcn_tf.preprocessing",
    "build_model": "fcn_tf.models",
    "default_preprocessing": "fcn_tf.models",
    "from_pytorch": "fcn_tf.weights.from_pytorch",
    "list_backbones": "fcn_tf.models",
    "list_models": "fcn_tf.models",
    "load_weights": "fcn_tf.weights",
}
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
