"""Computing a built model in another precision, with the same weights.

``mixed_bfloat16`` computes convolutions in bfloat16 with float32 variables:
on CPUs with bf16 matrix units (AVX512-BF16, AMX) and on recent GPUs it is
about twice as fast as float32 (see docs/PERFORMANCE.md). The ``logits``
layer of every model stays float32, so outputs are float32 in any precision.
"""

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# Layers kept float32 in every precision (the model's output; see models/common.py).
FLOAT32_LAYERS = ("logits",)


def check_precision(precision, setting="precision"):
    if precision not in PRECISIONS:
        raise ValueError(f"{setting}: expected one of {', '.join(PRECISIONS)}, "
                         f"received {precision!r}.")
    return precision


def layer_precision(layer, precision):
    return "float32" if layer.name in FLOAT32_LAYERS else precision


def with_precision(model, precision):
    """``model`` itself if its layers already compute in ``precision``, else a copy that does.

    The copy has the same architecture, layer names and (float32) weights;
    only each layer's dtype policy differs. Used to export a model trained in
    float32 for bfloat16 inference, and a mixed-precision one for TFLite
    (which has no bfloat16 kernels).
    """
    import keras

    check_precision(precision)
    if all(layer.dtype_policy.name == layer_precision(layer, precision)
           for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)):
        return model

    def convert(layer):
        config = {**layer.get_config(), "dtype": layer_precision(layer, precision)}
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=convert)
    copy.set_weights(model.get_weights())
    return copy
