"""Running a built model in another precision with the same weights."""

import numpy as np
import pytest

import fcn_tf
from fcn_tf.precision import check_precision, with_precision


def test_bfloat16_copy_keeps_weights_names_and_float32_logits():
    model = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    copy = with_precision(model, "mixed_bfloat16")
    assert copy is not model
    assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    computing = {layer.dtype_policy.name for layer in copy.layers[1:] if layer.name != "logits"}
    assert copy.layers[0].name == "image"  # the InputLayer, which computes nothing
    assert computing == {"mixed_bfloat16"}
    assert copy.get_layer("logits").dtype_policy.name == "float32"
    x = np.random.default_rng(0).normal(size=(2, 16, 24, 3)).astype("float32")
    out = np.asarray(copy(x))
    assert out.dtype == np.float32
    # bfloat16 keeps about 3 significant digits.
    np.testing.assert_allclose(out, np.asarray(model(x)), atol=0.05)
    assert with_precision(copy, "mixed_bfloat16") is copy
    assert with_precision(model, "float32") is model


def test_unknown_precision_lists_the_options():
    with pytest.raises(ValueError, match="expected one of float32, mixed_bfloat16"):
        check_precision("bf16")
