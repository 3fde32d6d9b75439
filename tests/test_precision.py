"""Running a built model in another precision with the same weights."""

import numpy as np
import pytest

import fcn_tf
from fcn_tf.precision import check_precision, resolve_precision, with_precision


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


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\n")
    return str(path)


@pytest.mark.parametrize("flags, expected", [
    ("avx512f avx512_bf16 avx512_vnni", "mixed_bfloat16"),
    ("amx_bf16 amx_tile", "mixed_bfloat16"),
    ("fma avx512f", "float32"),  # AVX-512 without bf16: emulated, slower
    ("", "float32"),
])
def test_auto_precision_follows_the_cpu_bf16_units(tmp_path, flags, expected):
    policy, reason = resolve_precision("auto", cpuinfo=_cpuinfo(tmp_path, flags), gpus=[])
    assert policy == expected
    assert reason.startswith("the CPU has bf16 units") == (expected == "mixed_bfloat16")


@pytest.mark.parametrize("gpus, expected", [
    ([(9, 0)], "mixed_bfloat16"), ([(8, 0), (8, 6)], "mixed_bfloat16"),
    ([(7, 5)], "mixed_float16"), ([(8, 0), (7, 0)], "mixed_float16"),  # the oldest decides
    ([(6, 1)], "float32"),
])
def test_auto_precision_on_gpus_ignores_the_cpu(tmp_path, gpus, expected):
    cpuinfo = _cpuinfo(tmp_path, "avx512_bf16")
    assert resolve_precision("auto", cpuinfo=cpuinfo, gpus=gpus)[0] == expected


def test_explicit_precision_is_kept_and_checked(tmp_path):
    cpuinfo = _cpuinfo(tmp_path, "")
    assert resolve_precision("mixed_bfloat16", cpuinfo=cpuinfo, gpus=[]) == (
        "mixed_bfloat16", "as configured")
    assert resolve_precision("auto", cpuinfo=str(tmp_path / "missing"), gpus=[])[0] == "float32"
    with pytest.raises(ValueError, match="expected one of float32"):
        resolve_precision("bfloat16", cpuinfo=cpuinfo, gpus=[])
