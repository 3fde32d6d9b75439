"""How a batch is turned into logits: scales, flip, sliding windows (:class:`InferenceOptions`).

Example:
    >>> InferenceOptions(window=256, scales=[0.75, 1]).to_dict()["window"]
    [256, 256]
"""

import dataclasses

import numpy as np

WEIGHTINGS = ("taper", "average")


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """How a batch is turned into logits.

    Args:
        scales: test-time scales; the logits of every scale are resized back
            to the input size and averaged.
        flip: also average the horizontally flipped prediction.
        window: ``(height, width)`` of sliding windows, or ``None`` for the
            whole image in one call. Windows never exceed the image.
        overlap: fraction of a window shared with its neighbour, in [0, 0.9].
        window_batch: windows per model call (bounds memory).
        weighting: ``"taper"`` (weights fall linearly towards window borders,
            never to zero) or ``"average"`` (equal weights).
    """

    scales: tuple = (1.0,)
    flip: bool = False
    window: tuple | None = None
    overlap: float = 0.5
    window_batch: int = 4
    weighting: str = "taper"

    def __post_init__(self):
        scales = tuple(float(s) for s in self.scales)
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales: expected positive numbers, received {list(self.scales)}.")
        object.__setattr__(self, "scales", scales)
        if self.window is not None:
            window = tuple(int(v) for v in np.broadcast_to(np.ravel(self.window), (2,)))
            if min(window) < 1:
                raise ValueError(f"window: expected [height, width] >= 1, received {list(window)}.")
            object.__setattr__(self, "window", window)
        if not 0.0 <= self.overlap <= 0.9:
            raise ValueError(f"overlap: expected a fraction in [0, 0.9], received {self.overlap}.")
        if self.window_batch < 1:
            raise ValueError(f"window_batch: expected >= 1, received {self.window_batch}.")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(
                f"weighting: expected one of {', '.join(WEIGHTINGS)}, received {self.weighting!r}."
            )

    @classmethod
    def from_eval_config(cls, eval_config, **overrides):
        """Options from a run config's ``eval`` section, with keyword overrides."""
        values = {"scales": tuple(eval_config.scales), "flip": eval_config.flip,
                  "window": eval_config.window, "overlap": eval_config.overlap}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self):
        return {"scales": list(self.scales), "flip": self.flip,
                "window": list(self.window) if self.window else None,
                "overlap": self.overlap, "window_batch": self.window_batch,
                "weighting": self.weighting}
