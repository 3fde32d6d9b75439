"""Metrics against hand-computed values, and python -m fcn_tf.evaluate end to end."""

import json

import numpy as np
import pytest

from fcn_tf.metrics import confusion_matrix, scores_from_confusion
from test_inference import make_run_folder


def test_fcn_metrics_match_hand_computed_values_with_an_absent_class_and_ignored_pixels():
    # Labels over 4 classes plus ignore (255); class 3 never appears in the labels
    # but is predicted once; the two ignored pixels carry predictions that must
    # not count.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 255, 255])
    predicted = np.array([0, 0, 0, 1, 1, 1, 3, 2, 0, 3, 1])
    cm = confusion_matrix(labels, predicted, num_classes=4, ignore_label=255)
    expected_cm = [[3, 1, 0, 0],
                   [0, 2, 0, 1],
                   [1, 0, 1, 0],
                   [0, 0, 0, 0]]
    assert cm.tolist() == expected_cm
    scores = scores_from_confusion(cm, ["a", "b", "c", "d"])
    # n_ii = 3, 2, 1, 0; t_i = 4, 3, 2, 0; predicted column sums = 4, 3, 1, 1
    assert scores["pixel_accuracy"] == pytest.approx(6 / 9)
    # mean accuracy over classes present in the labels: (3/4 + 2/3 + 1/2) / 3
    assert scores["mean_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 1 / 2) / 3)
    # IU_i = n_ii / (t_i + sum_j n_ji - n_ii): 3/5, 2/4, 1/2, and 0/1 for the absent
    # class that was predicted (union 1), so it counts in the mean.
    iu = [3 / 5, 2 / 4, 1 / 2, 0.0]
    assert scores["mean_iou"] == pytest.approx(sum(iu) / 4)
    assert scores["frequency_weighted_iou"] == pytest.approx((4 * 3 / 5 + 3 * 2 / 4 + 2 * 1 / 2) / 9)
    rows = {row["class"]: row for row in scores["per_class"]}
    assert rows["d"] == {"class": "d", "iou": 0.0, "accuracy": None, "dice": 0.0, "pixels": 0}
    assert rows["a"]["iou"] == pytest.approx(0.6) and rows["b"]["accuracy"] == pytest.approx(2 / 3)
    # Dice_i = 2 n_ii / (t_i + predicted_i): 6/8, 4/6, 2/3; it is 2 IU / (1 + IU).
    for name, dice, iou in zip("abc", (6 / 8, 4 / 6, 2 / 3), iu):
        assert rows[name]["dice"] == pytest.approx(dice) == pytest.approx(2 * iou / (1 + iou))
    # A class absent from labels AND predictions is left out of the means.
    cm5 = np.zeros((5, 5), np.int64)
    cm5[:4, :4] = cm
    assert scores_from_confusion(cm5)["mean_iou"] == pytest.approx(sum(iu) / 4)
    assert scores_from_confusion(cm5)["per_class"][4]["iou"] is None


def _expected_confusion(model, config, mean, std):
    """Whole-image predictions of every val image, scored pixel by pixel."""
    from fcn_tf.data import split_files
    from fcn_tf.data.decode import read_image_array, read_mask_array

    total = np.zeros((3, 3), np.int64)
    for image_path, mask_path in split_files(config.data, "val"):
        image = (read_image_array(image_path, 3).astype(np.float32) - mean) / std
        logits = np.asarray(model(image[None], training=False))[0]
        total += confusion_matrix(read_mask_array(mask_path, config.data), logits.argmax(-1),
                                  3, 255)
    return total


def test_evaluate_cli_writes_metrics_table_and_heatmap(tmp_path, capsys):
    from fcn_tf import evaluate

    run_dir, config, model = make_run_folder(tmp_path)
    code = evaluate.main([str(run_dir / "config.json"), "--checkpoint", str(run_dir),
                          "--split", "val", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    for text in ("pixel accuracy", "mean accuracy", "mean IU", "frequency-weighted IU",
                 "class_0", "IoU %"):
        assert text in out
    report = run_dir / "eval-val"
    metrics = json.loads((report / "metrics.json").read_text())
    cm = json.loads((report / "confusion_matrix.json").read_text())
    assert (report / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cm["class_names"] == config.data.class_names
    expected = _expected_confusion(model, config, 10.0, 200.0)
    assert cm["matrix"] == expected.tolist()  # full resolution, padding ignored
    assert np.sum(cm["matrix"]) == 4 * 32 * 32
    assert metrics["mean_iou"] == pytest.approx(scores_from_confusion(expected)["mean_iou"])
    assert "preprocessing.json" in metrics["normalization_source"]


def test_evaluate_with_tta_and_sliding_windows(tmp_path):
    from fcn_tf.evaluation import evaluate_checkpoint
    from fcn_tf.inference import InferenceOptions, predict_logits

    run_dir, config, model = make_run_folder(tmp_path)
    scores, out_dir = evaluate_checkpoint(config, str(run_dir / "best.keras"), "val",
                                          scales=[0.75, 1.0, 1.25], flip=True, window=(24, 24),
                                          overlap=0.5, out_dir=str(tmp_path / "report"),
                                          verbose=0)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["inference"]["scales"] == [0.75, 1.0, 1.25] and metrics["inference"]["flip"]
    assert metrics["inference"]["window"] == [24, 24]
    # Same numbers as running the shared inference by hand.
    from fcn_tf.data import split_files
    from fcn_tf.data.decode import read_image_array, read_mask_array

    options = InferenceOptions(scales=(0.75, 1.0, 1.25), flip=True, window=(24, 24))
    fn = lambda x: np.asarray(model(x, training=False))  # noqa: E731
    total = np.zeros((3, 3), np.int64)
    for image_path, mask_path in split_files(config.data, "val"):
        image = (read_image_array(image_path, 3).astype(np.float32) - 10.0) / 200.0
        classes = predict_logits(fn, image[None], options)[0].argmax(-1)
        total += confusion_matrix(read_mask_array(mask_path, config.data), classes, 3, 255)
    assert scores["confusion_matrix"] == total.tolist()


def test_evaluate_split_defaults_to_the_config_eval_section(tmp_path):
    import dataclasses

    from fcn_tf.evaluation import evaluate_split
    from fcn_tf.preprocessing import Preprocessing

    run_dir, config, model = make_run_folder(tmp_path)
    prep = Preprocessing((10.0,) * 3, (200.0,) * 3)
    plain = evaluate_split(model, config, prep, "val")
    assert plain["confusion_matrix"] == _expected_confusion(model, config, 10.0, 200.0).tolist()
    flipped = dataclasses.replace(config, eval=dataclasses.replace(config.eval, flip=True))
    assert evaluate_split(model, flipped, prep, "val")["split"] == "val"


def test_evaluate_cli_errors_name_the_problem(tmp_path, capsys):
    from fcn_tf import evaluate

    run_dir, _, _ = make_run_folder(tmp_path)
    assert evaluate.main([str(run_dir / "config.json"), "--checkpoint",
                          str(tmp_path / "nope.keras"), "--quiet"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert evaluate.main([str(run_dir / "config.json"), "--checkpoint", str(run_dir),
                          "--window", "big", "--quiet"]) == 2
    assert "--window: expected H W" in capsys.readouterr().err
    # A config whose final model trains on train + val names no split to score.
    assert evaluate.main([str(run_dir / "config.json"), "--checkpoint", str(run_dir),
                          "--set", "eval.split=null", "--quiet"]) == 2
    assert "eval.split: the config names no split to score" in capsys.readouterr().err
