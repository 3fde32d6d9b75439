"""A package face whose names are imported on first use (PEP 562).

A package's ``__init__`` that imports its public names eagerly makes every
``import fcn_tf.<anything>`` pay for them: ``fcn_tf.models`` brings Keras and
TensorFlow. With :func:`lazy_exports` the face holds only a table of
``{name: module}``; a name is imported the first time it is read.

Example:
    >>> getattr_, dir_ = lazy_exports("json", {"dumps": "json"})
    >>> getattr_("dumps")({"a": 1})
    '{"a": 1}'
"""

import importlib
import sys


def lazy_exports(package, table):
    """``(__getattr__, __dir__)`` for the package named ``package``.

    Args:
        package: the package's ``__name__``.
        table: ``{public name: module that defines it}``.

    Returns:
        The two module-level functions of PEP 562. ``__getattr__`` imports a
        name of ``table`` from its module (and keeps it in the package, so it
        is imported once); any other public name is tried as a submodule
        (``fcn_tf.models`` after ``import fcn_tf``, as an eager face allowed),
        else it is an ``AttributeError``.
    """

    def __getattr__(name):
        if name in table:
            value = getattr(importlib.import_module(table[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        if not name.startswith("_"):
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise  # the submodule exists; something it imports does not
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
