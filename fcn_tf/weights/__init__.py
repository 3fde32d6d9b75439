"""Pretrained weights: one entry point, :func:`load_weights`, for every file format.

=================================  ===========================  =====================
File                               Loads into                   Module
=================================  ===========================  =====================
MatConvNet ``imagenet-vgg-         the VGG encoder (+ fc6/fc7)  :mod:`.matconvnet`
verydeep-16/19.mat``               of fcn*s / fcn_deconv
``keras.applications`` ``.h5`` /   VGG, MobileNetV2, Xception   :mod:`.keras_h5`
``.weights.h5``                    encoders
``.npz`` of a pytorch-fcn          FCN-8s/16s/32s, every layer  :mod:`.torch_npz`
state dict
``.keras`` checkpoint of this      the same layers by name      :mod:`.keras_checkpoint`
package
``.pth`` / ``.pt`` PyTorch state   FCN-8s/16s/32s, U-Net,       :mod:`.torch_pth`
dict (read without PyTorch)        DeepLabV3+ ``bubbliiiing``
=================================  ===========================  =====================

Every loader turns its file into ``{layer name: [arrays in Keras layout]}``
with a pure mapping function that lists what it transposes; one function
(:func:`fcn_tf.weights.assign.assign_weights`) then checks every name and
every shape against the model before it writes anything. Nothing is
downloaded: see ``weights/README.md`` for where the files come from.

**Channel order.** Models of this package always take RGB. Weights trained
on BGR inputs (Caffe's VGG as used by ``keras.applications`` VGG and by
pytorch-fcn) are converted on load by reversing the input channels of the
first convolution's kernel, so ``conv1_1(rgb)`` with the converted kernel
equals ``conv1_1(bgr)`` with the original one. ``channel_order`` says what the
file's first convolution expects; its default is each format's known
convention (table in :func:`load_weights`).
"""

from fcn_tf.weights.errors import WeightsError
from fcn_tf.weights.loading import (
    CHANNEL_ORDERS,
    FORMATS,
    IMAGENET,
    SUFFIXES,
    LoadedWeights,
    load_weights,
    sniff_format,
)

__all__ = ["CHANNEL_ORDERS", "FORMATS", "IMAGENET", "SUFFIXES", "LoadedWeights", "WeightsError",
           "load_weights", "sniff_format"]
