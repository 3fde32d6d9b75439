"""A narrow work-around that lets Keras 3 ``fit`` run under MultiWorkerMirroredStrategy.

Keras 3 (seen in 3.15, reported as tensorflow/tensorflow#72388) reduces each
metric result across workers with ``strategy.reduce("MEAN", v, axis=0)``,
which fails for the scalar results every metric returns ("Invalid reduction
dimension 0 for input with 0 dimensions"). While :func:`patched_fit` is
active, scalars are reduced as 1-element vectors; nothing else changes, and
the original function is restored afterwards.
"""

import contextlib


@contextlib.contextmanager
def patched_fit():
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            import tensorflow as tf

            def reduce_one(v):
                if getattr(v, "shape", None) is not None and v.shape.rank == 0:
                    return strategy.reduce("MEAN", tf.reshape(v, [1]), axis=0)
                return original(v, strategy, reduction)

            return tf.nest.map_structure(reduce_one, values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original
