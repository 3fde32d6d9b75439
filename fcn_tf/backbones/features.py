"""The contract between backbones and heads: feature maps keyed by stride."""


class Features(dict):
    """Feature maps keyed ``"Pn"``, where ``n`` is the nominal stride level 2**n.

    ``strides`` gives each map's actual stride: a backbone built with output
    stride 16 still calls its deepest map ``"P5"``, but records stride 16
    because the last stage traded its stride for dilation (DeepLab).
    ``channels`` gives each map's channel count, so heads never hard-code it.
    """

    def __init__(self):
        super().__init__()
        self.strides = {}

    def add(self, level, tensor, stride):
        key = f"P{level}"
        self[key] = tensor
        self.strides[key] = int(stride)

    @property
    def channels(self):
        return {key: int(t.shape[-1]) for key, t in self.items()}

    def require(self, *keys, model="this head"):
        missing = [k for k in keys if k not in self]
        if missing:
            raise ValueError(
                f"{model} needs backbone features {', '.join(keys)}, but the backbone "
                f"provides only {', '.join(sorted(self))}."
            )
        return [self[k] for k in keys]


class DilationTracker:
    """Trade stride for dilation once ``output_stride`` is reached (DeepLab).

    Call :meth:`step` for every layer that would downsample by ``stride``; it
    returns the ``(stride, dilation)`` that layer should use. Following the
    TF-slim rule, the first layer whose stride is removed keeps the current
    dilation and every later layer multiplies it by the removed stride.
    """

    def __init__(self, output_stride=None):
        self.output_stride = output_stride
        self.current_stride = 1
        self.rate = 1

    def step(self, stride):
        if stride == 1:
            return 1, self.rate
        if self.output_stride is not None and self.current_stride >= self.output_stride:
            rate = self.rate
            self.rate *= stride
            return 1, rate
        self.current_stride *= stride
        return stride, 1
