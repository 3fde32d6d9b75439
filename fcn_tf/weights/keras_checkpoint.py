"""``.keras`` checkpoints saved by this package (``model.save("x.keras")``).

The checkpoint is rebuilt with ``keras.models.load_model`` (this package's
layers are registered as serialisable) and its weights are copied layer by
layer, by name, into the target model; nothing is transposed. With
``strict=False`` a checkpoint of a related model loads the layers both share,
e.g. FCN-32s into FCN-16s as in the paper's staged training.
"""

import zipfile

from fcn_tf.weights import WeightsError
from fcn_tf.weights.assign import FileWeights, model_layers

HINT = (
    "A .keras checkpoint loads into a model built with the same name, backbone, "
    "num_classes and options; use strict=False to load only the layers both share."
)


def checkpoint_arrays(checkpoint):
    """``{layer name: [arrays]}`` of every layer with weights of a loaded Keras model."""
    return {
        name: [variable.numpy() for variable in layer.weights]
        for name, layer in model_layers(checkpoint).items()
    }


def read(path, model):
    """Read a ``.keras`` checkpoint into :class:`FileWeights` (identity mapping)."""
    import keras

    import fcn_tf.layers  # noqa: F401  (registers the custom layers)

    try:
        checkpoint = keras.models.load_model(path, compile=False)
    except (zipfile.BadZipFile, EOFError) as error:
        raise WeightsError(
            f"not a .keras archive or truncated: {path} ({type(error).__name__}: {error})."
        ) from error
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise WeightsError(
            f"{path}: cannot rebuild the .keras checkpoint ({type(error).__name__}: "
            f"{error}). Is it a checkpoint of this package (fcn_tf)?"
        ) from error
    return FileWeights(
        arrays=checkpoint_arrays(checkpoint),
        required=tuple(model_layers(model)),
        hint=HINT,
    )
