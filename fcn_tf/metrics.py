"""Segmentation metrics from one dataset-level confusion matrix.

The four metrics of the FCN paper (Long et al., 2015, Sec. 5), with
``n_ij`` the number of pixels of class ``i`` predicted as ``j`` and
``t_i = sum_j n_ij``:

- pixel accuracy ``sum_i n_ii / sum_i t_i``;
- mean accuracy ``(1/n_cl) sum_i n_ii / t_i``;
- mean IU ``(1/n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)``;
- frequency-weighted IU ``(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)``.

Per class it also gives IU, accuracy (recall) and the Dice coefficient
``2 n_ii / (t_i + sum_j n_ji)`` (the F1 score; ``2 IU / (1 + IU)``), the
measure biomedical segmentation usually reports.

Classes absent from both labels and predictions (union 0) are left out of the
means; a class absent from the labels but predicted has IU 0. Pixels with the
ignore label are never counted.
"""

import keras
import numpy as np
from keras import ops

from fcn_tf.outputs import logits_to_classes


def confusion_matrix(labels, predictions, num_classes, ignore_label=255):
    """NumPy confusion matrix ``[true, predicted]`` of int arrays, ignore excluded."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
    valid = labels != ignore_label
    index = labels[valid] * num_classes + predictions[valid]
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores_from_confusion(confusion, class_names=None):
    """The FCN paper's four metrics plus per-class IoU and accuracy, as a dict."""
    cm = np.asarray(confusion, dtype=np.float64)
    true = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    diag = np.diag(cm)
    union = true + pred - diag
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, diag / union, np.nan)
        acc = np.where(true > 0, diag / true, np.nan)
        dice = np.where(union > 0, 2 * diag / (true + pred), np.nan)
    total = true.sum()
    present = union > 0
    names = class_names or [str(i) for i in range(len(cm))]
    return {
        "pixel_accuracy": float(diag.sum() / total) if total else float("nan"),
        "mean_accuracy": float(np.nanmean(acc)) if np.any(true > 0) else float("nan"),
        "mean_iou": float(np.nanmean(iou)) if np.any(present) else float("nan"),
        "frequency_weighted_iou": (
            float(np.nansum(true * np.nan_to_num(iou)) / total) if total else float("nan")
        ),
        "per_class": [
            {"class": names[i], "iou": _none_if_nan(iou[i]), "accuracy": _none_if_nan(acc[i]),
             "dice": _none_if_nan(dice[i]), "pixels": int(true[i])}
            for i in range(len(cm))
        ],
    }


def _none_if_nan(value):
    return None if np.isnan(value) else float(value)


class ConfusionMatrixMetric(keras.metrics.Metric):
    """Accumulates a ``[num_classes, num_classes]`` confusion matrix over a dataset.

    Keras' own ``MeanIoU(ignore_class=...)`` handles multi-class logits, but
    not a single binary logit, and gives no pixel accuracy from the same
    counts; this base serves :class:`MeanIoU` and :class:`PixelAccuracy`.
    """

    default_name = None  # each subclass names itself

    def __init__(self, num_classes, ignore_label=255, name=None, **kwargs):
        super().__init__(name=name or self.default_name, **kwargs)
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros",
            dtype="float32", name="confusion",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predicted = ops.reshape(logits_to_classes(y_pred), (-1,))
        valid = ops.cast(ops.not_equal(labels, self.ignore_label), "float32")
        labels = ops.where(valid > 0, labels, ops.zeros_like(labels))
        index = labels * self.num_classes + predicted
        counts = ops.segment_sum(valid, index, num_segments=self.num_classes**2)
        self.confusion.assign_add(ops.reshape(counts, (self.num_classes, self.num_classes)))

    def reset_state(self):
        self.confusion.assign(ops.zeros_like(self.confusion))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "ignore_label": self.ignore_label}


@keras.saving.register_keras_serializable(package="fcn_tf")
class MeanIoU(ConfusionMatrixMetric):
    """Mean intersection over union over classes present in labels or predictions."""

    default_name = "mean_iou"

    def result(self):
        cm = self.confusion
        diag = ops.diagonal(cm)
        union = ops.sum(cm, axis=0) + ops.sum(cm, axis=1) - diag
        present = ops.cast(union > 0, "float32")
        iou = diag / ops.maximum(union, 1.0)
        return ops.sum(iou * present) / ops.maximum(ops.sum(present), 1.0)


@keras.saving.register_keras_serializable(package="fcn_tf")
class PixelAccuracy(ConfusionMatrixMetric):
    """Fraction of valid pixels whose class is right."""

    default_name = "pixel_accuracy"

    def result(self):
        cm = self.confusion
        return ops.sum(ops.diagonal(cm)) / ops.maximum(ops.sum(cm), 1.0)
