"""Serving an exported model: ``python -m fcn_tf.serve MODEL``.

TensorFlow Serving's REST API v1 (``/v1/models/NAME:predict``), a web page at
``/``, dynamic batching, request limits, health and Prometheus metrics, on
Starlette and uvicorn; ``python -m fcn_tf.serve.load`` load-tests it. See
docs/SERVING.md. This package never imports ``fcn_tf.training``. The names
below are imported on first use, so the load tool imports neither TensorFlow
nor Starlette.

Example:
    >>> from fcn_tf.serve import ServeConfig, create_app, load_served_model  # doctest: +SKIP
    >>> served = load_served_model("runs/default")                  # doctest: +SKIP
    >>> app = create_app(served, ServeConfig(max_batch=8))          # doctest: +SKIP
"""

from fcn_tf.utils.lazy import lazy_exports as _lazy_exports

_EXPORTS = {
    "ServeConfig": "fcn_tf.serve.app",
    "create_app": "fcn_tf.serve.app",
    "load_served_model": "fcn_tf.serve.model",
    "resolve_model_dir": "fcn_tf.serve.model",
}
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
