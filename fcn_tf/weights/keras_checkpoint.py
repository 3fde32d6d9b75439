"""``.keras`` checkpoints saved by this package (``model.save("x.keras")``).

The checkpoint is rebuilt with ``keras.models.load_model`` (this package's
layers are registered as serialisable) and its weights are copied layer by
layer, by name, into the target model; nothing is transposed. With
``strict=False`` a checkpoint of a related model loads the layers both share,
e.g. FCN-32s into FCN-16s as in the paper's staged training.
"""

import dataclasses
import zipfile

from fcn_tf.weights.assign import FileWeights, assign_weights, model_layers
from fcn_tf.weights.errors import WeightsError

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


def transfer_matching(model, path):
    """Copy the layers whose names and shapes agree with the checkpoint's; return their names.

    The start of a fine-tuning run: FCN-16s from FCN-32s, or a checkpoint
    trained with another class count (its classifier is left as built).
    Raises :class:`WeightsError` when no layer matches.
    """
    file_weights = read(path, model)
    layers = model_layers(model)
    matching = {
        name: arrays for name, arrays in file_weights.arrays.items()
        if name in layers
        and [a.shape for a in arrays] == [tuple(v.shape) for v in layers[name].weights]
    }
    if not matching:
        raise WeightsError(
            f"{path}: no layer of this checkpoint matches the model by name and shape; "
            "is it a checkpoint of a different architecture?"
        )
    loaded, _, _ = assign_weights(
        model, dataclasses.replace(file_weights, arrays=matching, required=()), path, strict=False
    )
    return list(loaded)
