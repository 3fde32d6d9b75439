"""Keras layers and initializers that the networks are built from.

All of them work at any input size: spatial sizes are read at run time, so
models built on ``(None, None, C)`` inputs export and serve at any size.
"""

from fcn_tf.layers.atrous import AtrousConv2D
from fcn_tf.layers.batch_norm import BatchNormalization
from fcn_tf.layers.crop import CenterCropLike, CropLike
from fcn_tf.layers.depthwise import DepthwiseConv2D
from fcn_tf.layers.im2col import Im2ColConv2D
from fcn_tf.layers.initializers import BilinearUpsampling, bilinear_kernel
from fcn_tf.layers.pad import CenterPadLike, PadToMultiple
from fcn_tf.layers.resize import BroadcastLike, ResizeLike, resize_images
from fcn_tf.layers.standardize import ImageStandardize

__all__ = [
    "AtrousConv2D",
    "BatchNormalization",
    "BilinearUpsampling",
    "BroadcastLike",
    "CenterCropLike",
    "CenterPadLike",
    "CropLike",
    "DepthwiseConv2D",
    "Im2ColConv2D",
    "ImageStandardize",
    "PadToMultiple",
    "ResizeLike",
    "bilinear_kernel",
    "resize_images",
]
