"""FLOPs counted from layers, against hand-computed values and published figures."""

import keras
import pytest

import fcn_tf
from fcn_tf.bench.flops import flops_per_image, layer_flops, model_flops
from model_cases import CASE_IDS, CASES


def _layer(layer, input_shape):
    inputs = keras.Input(input_shape)
    layer(inputs)
    return layer


@pytest.mark.parametrize("layer, input_shape, expected", [
    # 2 * H_out * W_out * k * k * C_in * C_out
    (keras.layers.Conv2D(4, 3, padding="same"), (8, 8, 3), 2 * 64 * 9 * 3 * 4),
    (keras.layers.Conv2D(4, 3), (8, 8, 3), 2 * 36 * 9 * 3 * 4),
    (keras.layers.Conv2D(6, 3, padding="same", strides=2), (8, 8, 3), 2 * 16 * 9 * 3 * 6),
    (keras.layers.Conv2D(4, 3, padding="same", groups=2), (8, 8, 4), 2 * 64 * 9 * 2 * 4),
    # every input pixel through the whole kernel: 2 * H_in * W_in * k * k * C_in * C_out
    (keras.layers.Conv2DTranspose(2, 4, strides=2), (8, 8, 3), 2 * 64 * 16 * 3 * 2),
    (keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2), (8, 8, 3),
     2 * 64 * 9 * 6),
    (keras.layers.SeparableConv2D(5, 3, padding="same"), (8, 8, 3),
     2 * 64 * (9 * 3 + 3 * 5)),
    (keras.layers.Dense(7), (10,), 2 * 10 * 7),
    (keras.layers.MaxPooling2D(), (8, 8, 3), 0),
    (keras.layers.BatchNormalization(), (8, 8, 3), 0),
])
def test_layer_flops_hand_computed(layer, input_shape, expected):
    assert layer_flops(_layer(layer, input_shape)) == expected


def test_published_backbone_figures():
    # VGG16 at 224: 15.47 G multiply-adds; MobileNetV2: 300 M (Sandler et al., Table 3).
    assert model_flops(keras.applications.VGG16(weights=None)) == 2 * 15_470_264_320
    mobilenet = model_flops(keras.applications.MobileNetV2(weights=None))
    assert abs(mobilenet / 2 - 300e6) / 300e6 < 0.01


def test_unknown_sizes_are_refused_with_the_fix():
    model = fcn_tf.build_model("unet", 2, base_filters=4, depth=2)
    with pytest.raises(ValueError, match="input_size"):
        model_flops(model)


@pytest.mark.parametrize("name, backbone, options", CASES, ids=CASE_IDS)
def test_every_model_is_counted_and_grows_with_the_image(name, backbone, options):
    small = flops_per_image(name, 3, 32, 32, backbone, **options)
    large = flops_per_image(name, 3, 64, 64, backbone, **options)
    assert small > 0
    # Four times the pixels: more work, at most about 4x (less for FCN, whose
    # fixed 100-pixel padding is a large part of a small image).
    assert small < large < 4.5 * small
