"""What a model's logits mean: class ids and class probabilities.

A model gives ``[..., K]`` logits: ``K`` classes (softmax), or one binary
logit for a two-class model (sigmoid, class 1 where the logit is > 0). These
two functions are the package's one reading of them: the metrics, the data
pictures, evaluation, predict and the exported graph call them. They take
a tensor (also inside ``tf.function``) or a NumPy array; a NumPy array gives
a NumPy array.

Example:
    >>> import numpy as np
    >>> logits_to_classes(np.array([[0.1, 2.0], [3.0, -1.0]])).tolist()
    [1, 0]
    >>> logits_to_probabilities(np.zeros((1, 1))).tolist()
    [[0.5, 0.5]]
"""

import numpy as np
import tensorflow as tf


def _like(result, logits):
    return result.numpy() if isinstance(logits, np.ndarray) else result


def logits_to_classes(logits):
    """int32 class ids ``[...]``: argmax, or ``logit > 0`` for a single binary logit."""
    tensor = tf.convert_to_tensor(logits)
    if tensor.shape[-1] == 1:
        classes = tf.cast(tensor[..., 0] > 0, tf.int32)
    else:
        classes = tf.argmax(tensor, axis=-1, output_type=tf.int32)
    return _like(classes, logits)


def logits_to_probabilities(logits):
    """float32 ``[..., K]`` softmax; a single binary logit gives ``[1 - p, p]``."""
    tensor = tf.cast(logits, tf.float32)
    if tensor.shape[-1] == 1:
        p = tf.sigmoid(tensor)
        probabilities = tf.concat([1.0 - p, p], axis=-1)
    else:
        probabilities = tf.nn.softmax(tensor, axis=-1)
    return _like(probabilities, logits)
