"""Learning-rate schedules with linear warmup: constant, poly, cosine, step."""

import math

import keras
from keras import ops

KINDS = ("constant", "poly", "cosine", "step")


@keras.saving.register_keras_serializable(package="fcn_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup for ``warmup_steps``, then one of the decays.

    - ``constant``: ``lr``;
    - ``poly``: ``min_lr + (lr - min_lr) (1 - t/T) ** power`` (DeepLab, power 0.9);
    - ``cosine``: ``min_lr + (lr - min_lr) (1 + cos(pi t/T)) / 2``;
    - ``step``: ``lr * gamma ** (number of boundaries passed)``.

    ``t`` counts steps after warmup and ``T = total_steps - warmup_steps``.
    The schedule is a function of the optimizer's step count only, so it
    resumes exactly from a checkpoint.

    Example:
        >>> s = WarmupSchedule(0.1, total_steps=100, kind="poly", power=1.0)
        >>> round(float(s(50)), 4)
        0.05
    """

    def __init__(self, learning_rate, total_steps, kind="constant", warmup_steps=0,
                 power=0.9, min_learning_rate=0.0, boundaries=(), gamma=0.1):
        if kind not in KINDS:
            raise ValueError(f"Unknown schedule {kind!r}. Available: {', '.join(KINDS)}.")
        self.learning_rate = float(learning_rate)
        self.total_steps = max(1, int(total_steps))
        self.kind = kind
        self.warmup_steps = int(warmup_steps)
        self.power = float(power)
        self.min_learning_rate = float(min_learning_rate)
        self.boundaries = [int(b) for b in boundaries]
        self.gamma = float(gamma)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = self.learning_rate
        decay_steps = float(max(1, self.total_steps - self.warmup_steps))
        t = ops.clip(step - self.warmup_steps, 0.0, decay_steps)
        if self.kind == "constant":
            value = ops.full_like(step, lr)
        elif self.kind == "poly":
            frac = 1.0 - t / decay_steps
            value = self.min_learning_rate + (lr - self.min_learning_rate) * ops.power(frac, self.power)
        elif self.kind == "cosine":
            cos = 0.5 * (1.0 + ops.cos(math.pi * t / decay_steps))
            value = self.min_learning_rate + (lr - self.min_learning_rate) * cos
        else:
            passed = sum(ops.cast(step >= b, "float32") for b in self.boundaries) if self.boundaries else 0.0
            value = lr * ops.power(self.gamma, passed)
        if self.warmup_steps > 0:
            warm = lr * (step + 1.0) / self.warmup_steps
            value = ops.where(step < self.warmup_steps, warm, value)
        return value

    def get_config(self):
        return {
            "learning_rate": self.learning_rate, "total_steps": self.total_steps,
            "kind": self.kind, "warmup_steps": self.warmup_steps, "power": self.power,
            "min_learning_rate": self.min_learning_rate, "boundaries": self.boundaries,
            "gamma": self.gamma,
        }
