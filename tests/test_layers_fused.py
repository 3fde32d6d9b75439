"""The speed layers give the numbers of the Keras layers they replace.

``fcn_tf.layers.BatchNormalization`` (TensorFlow's fused kernel) against
``keras.layers.BatchNormalization``: outputs, gradients and moving
statistics, float32 and bfloat16. ``fcn_tf.layers.AtrousConv2D`` (padding-only
taps cut) against ``keras.layers.Conv2D`` with the same kernel.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn_tf.layers import AtrousConv2D, BatchNormalization, DepthwiseConv2D, Im2ColConv2D
from fcn_tf.layers import atrous as atrous_module


def _twins(cls_a, cls_b, shape, **options):
    a, b = cls_a(**options), cls_b(**options)
    a.build(shape)
    b.build(shape)
    b.set_weights(a.get_weights())
    return a, b


def _random_bn_state(layer, rng):
    channels = layer.gamma.shape[0]
    layer.set_weights([
        rng.uniform(0.5, 1.5, channels).astype(np.float32),
        rng.normal(0, 0.5, channels).astype(np.float32),
        rng.normal(0, 0.5, channels).astype(np.float32),
        rng.uniform(0.5, 2.0, channels).astype(np.float32),
    ])


def _conv_twins(cls, shape, rng, **options):
    """``cls`` and ``keras.layers.Conv2D`` built alike with the same random weights."""
    layer, reference = _twins(cls, keras.layers.Conv2D, shape, **options)
    weights = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()]
    layer.set_weights(weights)
    reference.set_weights(weights)
    return layer, reference


def _assert_same_convolution(layer, reference, x, signature, dtype):
    """Outputs and gradients (input, kernel, bias) of two convolutions agree on ``x``."""
    tolerance = 1e-5 if dtype == "float32" else 2e-2

    @tf.function(input_signature=[signature])
    def run(images):
        outputs = []
        for net in (layer, reference):
            with tf.GradientTape() as tape:
                tape.watch(images)
                y = tf.cast(net(images), tf.float32)
                loss = tf.reduce_sum(y * y)
            outputs.append((y, tape.gradient(loss, [images, net.kernel, net.bias])))
        return outputs

    (y_l, grads_l), (y_r, grads_r) = run(x)
    assert y_l.shape == y_r.shape
    np.testing.assert_allclose(y_l, y_r, atol=tolerance * float(np.abs(y_r).max()), rtol=tolerance)
    for grad_l, grad_r in zip(grads_l, grads_r):
        scale = float(np.abs(grad_r).max())
        np.testing.assert_allclose(grad_l, grad_r, atol=tolerance * scale, rtol=tolerance)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("options", [
    {"momentum": 0.9, "epsilon": 1e-5},
    {"momentum": 0.99, "epsilon": 1e-3},
    {"momentum": 0.9, "epsilon": 1e-5, "center": False, "scale": False},
])
def test_batch_norm_matches_keras_float32(training, options):
    rng = np.random.default_rng(0)
    shape = (2, 5, 7, 6)
    fused, reference = _twins(BatchNormalization, keras.layers.BatchNormalization, shape, **options)
    if fused.scale:
        _random_bn_state(fused, rng)
        reference.set_weights(fused.get_weights())
    initial = [w.numpy() for w in fused.non_trainable_variables]
    x = tf.constant(rng.normal(1.0, 2.0, shape).astype(np.float32))
    upstream = tf.constant(rng.normal(size=shape).astype(np.float32))
    results = []
    for layer in (fused, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x] + list(layer.trainable_variables))
        results.append((y, grads, [w.numpy() for w in layer.non_trainable_variables]))
    (y_f, g_f, stats_f), (y_r, g_r, stats_r) = results
    np.testing.assert_allclose(y_f, y_r, atol=2e-5, rtol=1e-5)
    assert len(g_f) == len(g_r) == 1 + 2 * fused.scale
    for grad_f, grad_r in zip(g_f, g_r):
        np.testing.assert_allclose(grad_f, grad_r, atol=1e-4, rtol=1e-4)
    for stat_f, stat_r in zip(stats_f, stats_r):
        np.testing.assert_allclose(stat_f, stat_r, atol=1e-6, rtol=1e-5)
    for stat_f, start in zip(stats_f, initial):  # moved in training only, as Keras moves them
        assert np.allclose(stat_f, start) != training


def test_batch_norm_moves_statistics_with_biased_variance():
    x = np.arange(2 * 3 * 4 * 1, dtype=np.float32).reshape(2, 3, 4, 1)
    layer = BatchNormalization(momentum=0.0)
    layer(tf.constant(x), training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), [x.mean()], rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), [x.var()], rtol=1e-5)


@pytest.mark.parametrize("channels", [8, 16])  # 8: normalised in float32 (oneDNN's slow path)
def test_batch_norm_bfloat16_matches_keras(channels):
    rng = np.random.default_rng(1)
    shape = (2, 6, 6, channels)
    options = {"dtype": "mixed_bfloat16", "momentum": 0.9, "epsilon": 1e-5}
    fused, reference = _twins(BatchNormalization, keras.layers.BatchNormalization, shape, **options)
    _random_bn_state(fused, rng)
    reference.set_weights(fused.get_weights())
    x = tf.constant(rng.normal(0.5, 1.5, shape).astype(np.float32))
    for training in (False, True):
        y_f, y_r = fused(x, training=training), reference(x, training=training)
        assert y_f.dtype == y_r.dtype == tf.bfloat16
        np.testing.assert_allclose(
            tf.cast(y_f, tf.float32), tf.cast(y_r, tf.float32), atol=0.05, rtol=0.02
        )
    for stat_f, stat_r in zip(fused.non_trainable_variables, reference.non_trainable_variables):
        assert stat_f.dtype == "float32"
        np.testing.assert_allclose(stat_f.numpy(), stat_r.numpy(), atol=0.02, rtol=0.02)


def test_batch_norm_frozen_layer_uses_moving_statistics():
    rng = np.random.default_rng(2)
    layer = BatchNormalization()
    layer.build((1, 4, 4, 3))
    _random_bn_state(layer, rng)
    layer.trainable = False
    before = [w.numpy() for w in layer.weights]
    x = tf.constant(rng.normal(size=(1, 4, 4, 3)).astype(np.float32))
    np.testing.assert_allclose(layer(x, training=True), layer(x, training=False))
    for old, new in zip(before, layer.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_batch_norm_other_ranks_use_keras_path():
    layer = BatchNormalization()
    y = layer(tf.ones((3, 5)), training=True)
    assert y.shape == (3, 5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), np.full(5, 0.01), rtol=1e-5)


def test_batch_norm_round_trips_through_keras_saving(tmp_path):
    inputs = keras.Input((None, None, 2))
    model = keras.Model(inputs, BatchNormalization(name="bn")(inputs))
    path = tmp_path / "bn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer("bn")) is BatchNormalization


def _use_native_dilation(native, monkeypatch):
    """Run AtrousConv2D with (where this TensorFlow has it) or without native dilation."""
    if native and not atrous_module.native_dilation_supported():
        pytest.skip("this TensorFlow has no native dilated Conv2D gradients (oneDNN off)")
    monkeypatch.setattr(atrous_module, "native_dilation_supported", lambda: native)


@pytest.mark.parametrize("size, rate", [
    ((4, 4), 4),     # every off-centre tap reads padding: a 1x1 convolution
    ((3, 9), 5),     # only the vertical taps go: a 1x3 convolution
    ((9, 3), 3),     # only the horizontal taps go
    ((8, 8), 3),     # nothing to cut
    ((None, None), 6),  # size unknown when traced: the full convolution
])
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("native", [True, False])
def test_atrous_conv_equals_full_convolution(size, rate, dtype, native, monkeypatch):
    _use_native_dilation(native, monkeypatch)
    rng = np.random.default_rng(3)
    height, width = 4 if size[0] is None else size[0], 4 if size[1] is None else size[1]
    shape = (2, height, width, 3)
    options = {"filters": 5, "kernel_size": 3, "padding": "same", "dilation_rate": rate,
               "use_bias": True, "dtype": dtype}
    atrous, reference = _conv_twins(AtrousConv2D, shape, rng, **options)
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    _assert_same_convolution(atrous, reference, x, tf.TensorSpec((None,) + size + (3,), tf.float32),
                             dtype)


@pytest.mark.parametrize("native", [True, False])
def test_atrous_conv_cuts_the_kernel_only_where_taps_read_padding(native, monkeypatch):
    _use_native_dilation(native, monkeypatch)
    layer = AtrousConv2D(2, 3, padding="same", dilation_rate=4, use_bias=False)
    layer.build((1, 4, 9, 1))
    graph = tf.function(lambda x: layer(x)).get_concrete_function(
        tf.TensorSpec((1, 4, 9, 1), tf.float32)).graph
    convolutions = [op for op in graph.get_operations() if op.type == "Conv2D"]
    assert len(convolutions) == 1
    assert convolutions[0].inputs[1].shape.as_list() == [1, 3, 1, 2]
    space_to_batch = [op for op in graph.get_operations() if op.type == "SpaceToBatchND"]
    if native:  # the dilation stays on the Conv2D op
        assert convolutions[0].get_attr("dilations") == [1, 1, 4, 1] and not space_to_batch
    else:  # Keras' path: SpaceToBatchND around an undilated convolution
        assert convolutions[0].get_attr("dilations") == [1, 1, 1, 1] and space_to_batch


def test_native_dilation_probe_matches_onednn():
    # oneDNN is TensorFlow's default on x86 Linux; with it off the probe must say no.
    expected = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0" or bool(tf.config.list_physical_devices("GPU"))
    assert atrous_module.native_dilation_supported() is expected


@pytest.mark.parametrize("kernel_size", [1, 3, (2, 3)])
@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_im2col_conv_equals_convolution(kernel_size, dtype):
    rng = np.random.default_rng(4)
    shape = (2, 6, 5, 4)
    options = {"filters": 3, "kernel_size": kernel_size, "activation": "relu", "dtype": dtype}
    im2col, reference = _conv_twins(Im2ColConv2D, shape, rng, **options)
    x = tf.constant(rng.normal(size=shape).astype(np.float32))
    # Sizes unknown when traced, as in a model built on (None, None, C).
    _assert_same_convolution(im2col, reference, x, tf.TensorSpec((None, None, None, 4), tf.float32),
                             dtype)


def test_im2col_conv_other_settings_are_conv2d():
    layer = Im2ColConv2D(2, 3, padding="same", strides=2)
    reference = keras.layers.Conv2D(2, 3, padding="same", strides=2)
    x = tf.ones((1, 8, 8, 1))
    layer.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer(x), reference(x), atol=1e-6)


@pytest.mark.parametrize("options", [
    {"kernel_size": 3, "padding": "same"},
    {"kernel_size": 3, "padding": "valid", "strides": 2},
    {"kernel_size": 3, "padding": "same", "dilation_rate": 2},
])
def test_depthwise_bfloat16_forward_and_float32_gradients(options):
    rng = np.random.default_rng(5)
    shape = (2, 9, 9, 4)
    layer = DepthwiseConv2D(use_bias=False, dtype="mixed_bfloat16", **options)
    reference = keras.layers.DepthwiseConv2D(use_bias=False, dtype="float32", **options)
    layer.build(shape)
    reference.build(shape)
    weights = [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()]
    layer.set_weights(weights)
    reference.set_weights(weights)
    # Inputs exactly representable in bfloat16, so only the computation differs.
    x = tf.cast(tf.cast(rng.normal(size=shape).astype(np.float32), tf.bfloat16), tf.float32)
    upstream = tf.constant(rng.normal(size=reference(x).shape).astype(np.float32))
    results = []
    for net in (layer, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = net(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
        results.append((y, tape.gradient(loss, [x, net.kernel])))
    (y_b, grads_b), (y_f, grads_f) = results
    assert y_b.dtype == tf.bfloat16  # the forward pass stays in the compute dtype
    np.testing.assert_allclose(tf.cast(y_b, tf.float32), y_f, atol=0.05, rtol=0.02)
    for grad_b, grad_f in zip(grads_b, grads_f):
        assert grad_b.dtype == tf.float32
        scale = float(np.abs(grad_f).max())
        np.testing.assert_allclose(grad_b, grad_f, atol=0.02 * scale, rtol=0.02)


def test_depthwise_gradient_ops_run_in_float32_under_bfloat16():
    layer = DepthwiseConv2D(3, padding="same", use_bias=False, dtype="mixed_bfloat16")
    layer.build((1, 6, 6, 2))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x), tf.float32))
        return tape.gradient(loss, [x, layer.kernel])

    graph = step.get_concrete_function(tf.TensorSpec((1, 6, 6, 2), tf.float32)).graph
    ops_by_type = {}
    for op in graph.get_operations():
        ops_by_type.setdefault(op.type, []).append(op)
    for function in graph._functions.values():  # the custom gradient's body
        for op in function.graph.get_operations():
            ops_by_type.setdefault(op.type, []).append(op)
    assert {op.get_attr("T") for op in ops_by_type["DepthwiseConv2dNative"]} >= {tf.bfloat16}
    for kind in ("DepthwiseConv2dNativeBackpropInput", "DepthwiseConv2dNativeBackpropFilter"):
        assert {op.get_attr("T") for op in ops_by_type[kind]} == {tf.float32}
