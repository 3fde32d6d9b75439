"""Tiny configurations of every registered model and backbone, for test drivers.

Each case is ``(model name, backbone, options)`` small enough to build and run
in well under a second on a CPU, with the same topology as the full model.
"""

import fcn_tf

TINY_OPTIONS = {
    "fcn32s": {"width_multiplier": 1 / 16},
    "fcn16s": {"width_multiplier": 1 / 16},
    "fcn8s": {"width_multiplier": 1 / 16},
    "fcn_deconv": {"width_multiplier": 1 / 16},
    "unet": {"base_filters": 4, "depth": 3},
    "deeplabv3plus": {"aspp_filters": 8, "low_level_filters": 4, "decoder_filters": 8},
    "ddrnet_lite": {"widths": (4, 8, 8, 8), "blocks": (1, 1, 1, 1), "head_filters": 8},
    "fpn": {"widths": (4, 8, 8, 8), "blocks": (1, 1, 1, 1), "decoder_filters": 8},
}

CASES = [
    (name, backbone, TINY_OPTIONS[name])
    for name in fcn_tf.list_models()
    for backbone in fcn_tf.list_backbones(name)
]
CASE_IDS = [f"{name}-{backbone}" for name, backbone, _ in CASES]


def test_every_registered_model_has_a_tiny_case():
    assert set(TINY_OPTIONS) == set(fcn_tf.list_models())
