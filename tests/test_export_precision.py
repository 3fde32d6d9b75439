"""Export of a model trained with a mixed-precision policy (the default config's)."""

import numpy as np

import fcn_tf
import keras
from fcn_tf.exporting import export_checkpoint, float32_copy
from fcn_tf.runtimes import load_artifact


def _bf16_unet():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        return fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_float32_copy_has_same_weights_and_float32_layers():
    model = _bf16_unet()
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in model.layers)
    copy = float32_copy(model)
    assert all(layer.dtype_policy.name == "float32" for layer in copy.layers)
    for a, b in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(1, 16, 20, 3)).astype("float32")
    # bf16 compute keeps about 3 significant digits.
    np.testing.assert_allclose(np.asarray(copy(x)), np.asarray(model(x)), atol=0.05)
    plain = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    assert float32_copy(plain) is plain


def test_tflite_export_of_a_bfloat16_checkpoint_runs(tmp_path):
    model = _bf16_unet()
    path = tmp_path / "bf16.keras"
    model.save(path)
    result = export_checkpoint(str(path), str(tmp_path / "export"), tflite=True, tflite_size=(16, 20))
    pixels = np.random.default_rng(1).integers(0, 256, size=(1, 16, 20, 3), dtype=np.uint8)
    probabilities = load_artifact(str(tmp_path / "export" / "model.tflite"))(pixels)["probabilities"]
    assert probabilities.shape == (1, 16, 20, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-4)
    # Same preprocessing the export used (no run folder: the U-Net default, [0, 1]).
    expected = keras.ops.softmax(float32_copy(model)(pixels.astype("float32") / 255.0)).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert result["tflite_bytes"] > 0


def test_export_in_bfloat16_from_a_float32_checkpoint(tmp_path):
    import json

    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    path = tmp_path / "f32.keras"
    model.save(path)
    export_checkpoint(str(path), str(tmp_path / "bf16"), precision="mixed_bfloat16")
    metadata = json.loads((tmp_path / "bf16" / "metadata.json").read_text())
    assert metadata["precision"] == "mixed_bfloat16"
    assert metadata["jit_compile"] is False
    serve = tf.saved_model.load(str(tmp_path / "bf16")).signatures["serving_default"]
    pixels = np.random.default_rng(2).integers(0, 256, size=(1, 16, 20, 3), dtype=np.uint8)
    probabilities = serve(images=tf.constant(pixels))["probabilities"].numpy()
    expected = keras.ops.softmax(model(pixels.astype("float32") / 255.0)).numpy()
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, atol=0.02)


def test_export_with_xla_records_it_and_serves(tmp_path):
    import json

    import tensorflow as tf

    model = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    path = tmp_path / "m.keras"
    model.save(path)
    export_checkpoint(str(path), str(tmp_path / "xla"), jit_compile=True)
    assert json.loads((tmp_path / "xla" / "metadata.json").read_text())["jit_compile"] is True
    serve = tf.saved_model.load(str(tmp_path / "xla")).signatures["serving_default"]
    pixels = np.random.default_rng(3).integers(0, 256, size=(1, 16, 20, 3), dtype=np.uint8)
    expected = keras.ops.argmax(model(pixels.astype("float32") / 255.0), -1).numpy()
    np.testing.assert_array_equal(serve(images=tf.constant(pixels))["class_ids"].numpy(), expected)
