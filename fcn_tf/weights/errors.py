"""The one error of :mod:`fcn_tf.weights`, below every module that raises it."""


class WeightsError(ValueError):
    """A weights file that cannot be loaded into the model, and why."""


__all__ = ["WeightsError"]
