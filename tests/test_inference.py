"""Shared inference: sliding windows, test-time augmentation, checkpoint resolution.

Also home of :func:`make_run_folder`, a run folder made without training
(config.json, preprocessing.json, best.keras) used by the evaluate, predict
and export tests.
"""

import json
import os
import tracemalloc

import numpy as np
import pytest

from fcn_tf.inference import (
    InferenceOptions,
    load_for_inference,
    predict_logits,
    sliding_window_bands,
    sliding_window_logits,
    tta_logits,
    window_starts,
    window_weights,
)
from fcn_tf.runs import find_run_dir, resolve_preprocessing
from train_fixtures import tiny_config


def make_run_folder(tmp_path, name="run", model_options=None, data=None, mean=None, std=None):
    """A run folder holding a (randomly initialised) tiny U-Net, as training leaves it."""
    import fcn_tf
    from fcn_tf.config.run_config import parse_config

    config = tiny_config(tmp_path, model={"options": model_options or {"base_filters": 4,
                                                                       "depth": 2}},
                         data=data or {})
    parsed = parse_config(config, base_dir=str(tmp_path))
    run_dir = tmp_path / "runs" / name
    os.makedirs(run_dir, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(parsed.to_dict()))
    channels = parsed.data.image_channels
    (run_dir / "preprocessing.json").write_text(json.dumps(
        {"mean": mean or [10.0] * channels, "std": std or [200.0] * channels}))
    model = fcn_tf.build_model("unet", parsed.data.num_classes, input_channels=channels,
                               **parsed.model.options)
    model.save(run_dir / "best.keras")
    return run_dir, parsed, model


def pointwise(x):
    """A per-pixel 3-class "model": window placement cannot change its output."""
    x = np.asarray(x, np.float32)
    return np.concatenate([x[..., :1] * 2.0, x[..., 1:2] - x[..., :1], np.sin(x[..., 2:3])], -1)


def test_window_starts_cover_every_position_with_the_overlap():
    assert window_starts(10, 16, 0.5) == [0]
    assert window_starts(100, 32, 0.5) == [0, 16, 32, 48, 64, 68]
    assert window_starts(64, 32, 0.0) == [0, 32]
    for length, window, overlap in [(1000, 128, 0.25), (77, 13, 0.9), (500, 499, 0.5)]:
        starts = window_starts(length, window, overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + window] = True
        assert covered.all() and starts[-1] == length - window


def test_window_weights_taper_towards_the_borders_and_never_reach_zero():
    w = window_weights(7, 8, "taper")
    assert w.shape == (7, 8) and w.min() > 0 and w.max() == pytest.approx(1.0)
    assert w[0, 0] < w[3, 3] and np.allclose(w, w[::-1, ::-1])
    assert np.all(window_weights(5, 5, "average") == 1.0)


@pytest.mark.parametrize("weighting", ["taper", "average"])
@pytest.mark.parametrize("window,overlap", [((16, 16), 0.5), ((24, 10), 0.25), ((40, 7), 0.0)])
def test_sliding_window_equals_whole_image_for_a_pointwise_model(window, overlap, weighting):
    image = np.random.default_rng(0).normal(size=(2, 45, 61, 3)).astype(np.float32)
    whole = pointwise(image)
    options = InferenceOptions(window=window, overlap=overlap, weighting=weighting, window_batch=3)
    tiled = predict_logits(pointwise, image, options)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() < 1e-5


def test_sliding_window_on_a_real_model_equals_whole_image_when_one_window_covers_it():
    import fcn_tf

    model = fcn_tf.build_model("unet", 3, base_filters=4, depth=2)
    fn = lambda x: np.asarray(model(x, training=False))  # noqa: E731
    image = np.random.default_rng(1).normal(size=(1, 40, 56, 3)).astype(np.float32)
    whole = fn(image)
    tiled = predict_logits(fn, image, InferenceOptions(window=(64, 64), overlap=0.5))
    assert np.abs(tiled - whole).max() < 1e-5
    # Overlapping windows on an image larger than the window: same shape,
    # and the prediction deep inside every window matches the whole image.
    tiled = predict_logits(fn, image, InferenceOptions(window=(32, 32), overlap=0.5))
    assert tiled.shape == whole.shape
    agree = (tiled.argmax(-1) == whole.argmax(-1)).mean()
    assert agree > 0.8


def test_sliding_window_calls_the_model_on_small_batches_and_bands_stay_window_high():
    calls = []

    def recording(x):
        calls.append(x.shape)
        return pointwise(x)

    image = np.random.default_rng(2).normal(size=(300, 200, 3)).astype(np.float32)
    options = InferenceOptions(window=(64, 48), overlap=0.5, window_batch=2)
    bands = list(sliding_window_bands(recording, image, options))
    assert max(c[0] for c in calls) <= 2 and {c[1:3] for c in calls} == {(64, 48)}
    assert bands[0][0] == 0 and bands[-1][1] == 300
    assert all(b[1] - b[0] <= 64 and b[2].shape == (b[1] - b[0], 200, 3) for b in bands)
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))  # contiguous, no gaps


def test_sliding_window_memory_is_bounded_by_one_band_not_the_image():
    """Peak NumPy memory while streaming a 1500x2000 image stays far below its logits."""
    image = np.zeros((1500, 2000, 3), np.float32)
    image[::7] = 1.0
    options = InferenceOptions(window=(96, 96), overlap=0.5, window_batch=4)
    classes = np.zeros(image.shape[:2], np.uint8)
    tracemalloc.start()
    for top, bottom, logits in sliding_window_bands(pointwise, image, options):
        classes[top:bottom] = logits.argmax(-1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_logits = image.shape[0] * image.shape[1] * 3 * 4
    band = 96 * image.shape[1] * 4 * 4  # logits + weight sum, one window high
    assert peak < 3 * band and peak < full_logits / 4, (peak, full_logits)
    assert np.array_equal(classes, pointwise(image).argmax(-1))


def test_tta_flip_and_scale_average_logits_and_keep_the_size():
    image = np.random.default_rng(3).normal(size=(1, 20, 30, 3)).astype(np.float32)
    # A pointwise model commutes with flips: flip TTA changes nothing.
    assert np.abs(tta_logits(pointwise, image, flip=True) - pointwise(image)).max() < 1e-6
    constant = np.full((1, 20, 30, 3), 0.5, np.float32)
    out = tta_logits(pointwise, constant, scales=(0.5, 1.0, 1.5), flip=True)
    assert out.shape == (1, 20, 30, 3) and np.abs(out - pointwise(constant)).max() < 1e-5

    def left_marker(x):  # logit = column index: a flip-averaged result is symmetric
        columns = np.broadcast_to(np.arange(x.shape[2], dtype=np.float32)[None, None, :, None],
                                  x.shape[:3] + (1,))
        return np.concatenate([columns, -columns], -1)

    flipped = tta_logits(left_marker, image, flip=True)
    assert np.allclose(flipped[..., 0], (image.shape[2] - 1) / 2.0)


def test_inference_options_reject_bad_values_naming_the_setting():
    with pytest.raises(ValueError, match="overlap"):
        InferenceOptions(overlap=0.95)
    with pytest.raises(ValueError, match="scales"):
        InferenceOptions(scales=(0.0,))
    with pytest.raises(ValueError, match="weighting.*taper"):
        InferenceOptions(weighting="gauss")
    assert InferenceOptions(window=32).window == (32, 32)


def test_checkpoint_resolution_and_preprocessing_sources(tmp_path):
    import keras

    run_dir, config, model = make_run_folder(tmp_path)
    assert find_run_dir(str(run_dir)) == str(run_dir)
    assert find_run_dir(str(run_dir / "best.keras")) == str(run_dir)
    preprocessing, source = resolve_preprocessing(str(run_dir / "best.keras"))
    assert preprocessing.mean == (10.0, 10.0, 10.0) and "preprocessing.json" in source
    lonely = tmp_path / "lonely" / "unet.keras"
    lonely.parent.mkdir()
    model.save(lonely)
    preprocessing, source = resolve_preprocessing(str(lonely), keras.models.load_model(lonely))
    assert preprocessing.std == (255.0,) * 3 and "unet_encoder backbone default" in source

    loaded = load_for_inference(str(run_dir))
    assert loaded.kind == "keras" and loaded.info["class_names"] == config.data.class_names
    pixels = np.random.default_rng(4).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(model((pixels - 10.0) / 200.0))
    assert np.abs(loaded.logits(pixels) - expected).max() < 1e-5
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_for_inference(str(tmp_path / "missing.keras"))
    (tmp_path / "weights.h5").write_text("x")
    with pytest.raises(ValueError, match=r"expected a \.keras file"):
        load_for_inference(str(tmp_path / "weights.h5"))


def test_load_for_inference_with_a_config_describes_and_checks_the_model_by_it(tmp_path):
    import dataclasses

    run_dir, config, model = make_run_folder(tmp_path)
    renamed = dataclasses.replace(config, data=dataclasses.replace(
        config.data, class_names=("sky", "road", "car")))
    loaded = load_for_inference(str(run_dir / "best.keras"), config=renamed)
    assert loaded.info["class_names"] == ["sky", "road", "car"]
    # Normalised images (what the data pipeline gives) go to the Keras model as they are.
    images = np.random.default_rng(6).normal(size=(2, 16, 16, 3)).astype(np.float32)
    assert np.array_equal(loaded.normalised_logits(images), np.asarray(model(images)))
    # Without the Keras model (an export), they are turned back into pixels first.
    as_export = dataclasses.replace(loaded, keras_model=None)
    assert np.abs(as_export.normalised_logits(images) - np.asarray(model(images))).max() < 1e-5
    more = dataclasses.replace(config, data=dataclasses.replace(
        config.data, num_classes=5, class_names=tuple("abcde"),
        colors=tuple((i, i, i) for i in range(5))))
    with pytest.raises(ValueError, match="predicts 3 classes but the config's data.num_classes is 5"):
        load_for_inference(str(run_dir), config=more)


def test_sliding_window_logits_handles_images_smaller_than_the_window():
    image = np.random.default_rng(5).normal(size=(9, 11, 3)).astype(np.float32)
    out = sliding_window_logits(pointwise, image, InferenceOptions(window=(64, 64)))
    assert np.abs(out - pointwise(image)).max() < 1e-6
