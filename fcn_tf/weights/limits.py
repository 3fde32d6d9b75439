"""Bounds on what reading an untrusted weights file may allocate, checked before allocating.

A weights file declares the sizes of its arrays, and a broken or crafted one
can declare far more than it holds: a zip member that inflates to gigabytes,
an ``.npy`` header or an HDF5 dataset with a huge shape over a few bytes, a
PyTorch view that repeats one element a billion times. Every reader of this
package checks each declared size against a :class:`ReadBudget` *before* it
allocates, and refuses with the numbers:

- all arrays read from a file together may take at most :data:`MAX_EXPANSION`
  times the file's size (weights are stored uncompressed by ``torch.save``,
  ``numpy.savez`` and Keras: about 1x; even deflated float weights shrink
  little), and at least :data:`FLOOR_BYTES` for tiny files;
- never more than :data:`MAX_TOTAL_BYTES` (the largest network this package
  loads, VGG-16 with fc6/fc7, is 0.5 GB).

Example:
    >>> budget = ReadBudget.for_size("w.pth", 1000)
    >>> budget.take(4000, "tensor 'a'")
    >>> budget.limit
    67108864
"""

import os

from fcn_tf.weights.errors import WeightsError

MAX_EXPANSION = 16
FLOOR_BYTES = 64 << 20
MAX_TOTAL_BYTES = 16 << 30
# A pickle is the file's table of contents; a state dict's is a few megabytes.
MAX_PICKLE_BYTES = 256 << 20
# Containers nested deeper than this are not a checkpoint (and would overflow the stack).
MAX_DEPTH = 64


class ReadBudget:
    """How many bytes the arrays of one file may still take; :meth:`take` refuses beyond."""

    def __init__(self, path, file_bytes):
        self.path = path
        self.file_bytes = file_bytes
        self.limit = min(max(MAX_EXPANSION * file_bytes, FLOOR_BYTES), MAX_TOTAL_BYTES)
        self.used = 0

    @classmethod
    def for_file(cls, path):
        return cls(path, os.path.getsize(path))

    @classmethod
    def for_size(cls, path, file_bytes):
        return cls(path, file_bytes)

    def take(self, nbytes, what):
        """Count ``nbytes`` for ``what``; :class:`WeightsError` if the total passes the limit."""
        if self.used + nbytes > self.limit:
            raise WeightsError(
                f"{self.path}: {what} declares {nbytes:,} bytes; with the {self.used:,} bytes "
                f"read before it, the file's arrays would take more than {self.limit:,} bytes "
                f"({MAX_EXPANSION} times the file's {self.file_bytes:,} bytes, at least "
                f"{FLOOR_BYTES:,}, at most {MAX_TOTAL_BYTES:,}). Weights are stored "
                "uncompressed, so the file declares far more than it holds: it is corrupt or "
                "crafted. Nothing was allocated for it."
            )
        self.used += nbytes


def check_zip_member(info, path, budget, what):
    """Refuse a zip member whose declared unpacked size does not fit ``budget`` (nothing read)."""
    ratio = info.file_size / max(info.compress_size, 1)
    budget.take(info.file_size, f"{what} ({info.filename!r}, {info.compress_size:,} bytes "
                                f"packed, {ratio:.0f}x)")
