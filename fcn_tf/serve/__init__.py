"""Serving an exported model: ``python -m fcn_tf.serve MODEL``.

TensorFlow Serving's REST API v1 (``/v1/models/NAME:predict``), a web page at
``/``, dynamic batching, request limits, health and Prometheus metrics, on
Starlette and uvicorn; ``python -m fcn_tf.serve.load`` load-tests it. See
docs/SERVING.md. This package imports ``fcn_tf.export`` and lower modules,
never ``fcn_tf.training``.

Example:
    >>> from fcn_tf.serve import ServeConfig, create_app, load_served_model  # doctest: +SKIP
    >>> served = load_served_model("runs/default")                  # doctest: +SKIP
    >>> app = create_app(served, ServeConfig(max_batch=8))          # doctest: +SKIP
"""

from fcn_tf.serve.app import ServeConfig, create_app
from fcn_tf.serve.model import load_served_model, resolve_model_dir

__all__ = ["ServeConfig", "create_app", "load_served_model", "resolve_model_dir"]
