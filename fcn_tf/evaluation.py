"""Scoring a model on a dataset split from one confusion matrix.

Labels are scored at their full resolution: evaluation batches are padded
with the ignore label, never resized.
"""

import numpy as np

from fcn_tf.metrics import confusion_matrix, scores_from_confusion


def predict_logits(model, images):
    return np.asarray(model(images, training=False), dtype=np.float32)


def logits_to_classes(logits):
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(np.int64)
    return logits.argmax(-1)


def confusion_over_dataset(model, dataset, num_classes, ignore_label, predict=predict_logits,
                           verbose=0):
    """Accumulate the confusion matrix of ``model`` over ``(image, mask)`` batches."""
    total = np.zeros((num_classes, num_classes), np.int64)
    progress = None
    if verbose:
        import keras

        cardinality = int(dataset.cardinality())
        progress = keras.utils.Progbar(cardinality if cardinality > 0 else None, unit_name="batch")
    for index, (images, masks) in enumerate(dataset):
        predicted = logits_to_classes(predict(model, images))
        total += confusion_matrix(masks.numpy(), predicted, num_classes, ignore_label)
        if progress is not None:
            progress.update(index + 1)
    return total


def evaluate_split(model, config, preprocessing, split, verbose=0):
    """The FCN paper's metrics, per-class scores and the confusion matrix of ``split``."""
    from fcn_tf.data import build_dataset

    dataset = build_dataset(config.data, split, training=False,
                            batch_size=config.train.batch_size, preprocessing=preprocessing)
    cm = confusion_over_dataset(model, dataset, config.data.num_classes,
                                config.data.ignore_label, verbose=verbose)
    scores = scores_from_confusion(cm, list(config.data.class_names))
    scores["split"] = split
    scores["confusion_matrix"] = cm.tolist()
    return scores
