"""Read PyTorch ``.pth`` / ``.pt`` files without PyTorch and without running their code.

``torch.save`` writes a pickle. Unpickling it with :mod:`pickle` as is would
run any callable the file names (``os.system`` included), so this reader
uses an unpickler whose :meth:`~RestrictedUnpickler.find_class` answers only
the few globals a tensor or a plain container needs, each with a function of
this module (nothing of ``torch`` is imported), and refuses every other
global with a :class:`~fcn_tf.weights.WeightsError` naming the file and the
global.

Both file formats are read:

- **zip** (PyTorch >= 1.6): ``<dir>/data.pkl`` holds the object; each tensor
  storage is a persistent id ``('storage', StorageType, key, location,
  numel)`` whose bytes are ``<dir>/data/<key>``; ``<dir>/byteorder`` says
  ``little`` or ``big``.
- **legacy** (before 1.6): a pickle of the magic number
  ``0x1950a86a20f9469cfc6c``, one of the protocol version (1001), one of the
  system information, then the object pickle (persistent ids
  ``('storage', StorageType, key, location, numel, view_metadata)``), a
  pickle of the storage keys, and then for each key in that order its
  element count (8-byte little-endian) followed by its raw bytes.

Tensors become NumPy arrays of the same shape, built from their storage with
their offset and strides (views, transposes and slices sharing one storage
each come out as their own contiguous copy). ``float32``, ``float64``, ``float16`` and the integer and bool types
keep their dtype; ``bfloat16``, which NumPy lacks, becomes ``float32`` (exact).

The file is untrusted, so what it declares is checked before anything is
allocated (:mod:`fcn_tf.weights.limits`): a tensor may not hold more elements
than its storage (a stride-0 view that repeats one element is refused), every
zip member and storage must fit the file's read budget (a deflated member that
inflates to gigabytes is refused from its declared size), a storage must not
claim more bytes than the file has left, and containers may nest at most
:data:`~fcn_tf.weights.limits.MAX_DEPTH` levels. Each refusal names the numbers.

Example:
    >>> from fcn_tf.weights.torch_pickle import read_state_dict  # doctest: +SKIP
    >>> state = read_state_dict("checkpoint.pth")  # doctest: +SKIP
    >>> state["inc.double_conv.0.weight"].shape  # doctest: +SKIP
    (64, 3, 3, 3)
"""

import collections
import io
import math
import os
import pickle
import reprlib
import struct
import zipfile
import zlib

import numpy as np

from fcn_tf.weights.errors import WeightsError
from fcn_tf.weights.limits import MAX_DEPTH, MAX_PICKLE_BYTES, ReadBudget, check_zip_member

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
# The legacy file's first pickle: protocol 2, LONG1 of 10 bytes, the magic number.
LEGACY_HEAD = b"\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little")

# Storage class names torch writes, and the NumPy dtype of their elements
# (little-endian; swapped for a file that says "big").
STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}

# Larger tensor dimensions are refused (no weight has one; NumPy cannot always shape them).
MAX_DIMENSION = 2**31 - 1

# Where a training checkpoint keeps its state dict, most specific first.
STATE_DICT_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "net",
    "network",
    "module",
    "weights",
    "params",
)


class StorageType:
    """What ``torch.FloatStorage`` & co. stand for here: a name and an element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"unexpected state for storage type {self.name}")

    def __repr__(self):
        return f"torch.{self.name}"


class _Record:
    """A value built by this reader; a pickle may not set its state (BUILD is refused)."""

    __slots__ = ()

    def __init__(self, *values):
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"unexpected state for a {type(self).__name__[1:].lower()}")


class _Storage(_Record):
    """One storage of the file: its key, element type and count; bytes once read."""

    __slots__ = ("key", "type", "numel", "array")

    def __init__(self, key, storage_type, numel):
        super().__init__(key, storage_type, numel, None)


class _Tensor(_Record):
    """A tensor to build once its storage's bytes are read (legacy files come after)."""

    __slots__ = ("storage", "offset", "size", "stride")


class RefusedTensor(pickle.UnpicklingError):
    """A tensor the file declares that this reader refuses to build (the message says why)."""


def _int_tuple(value, what):
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise pickle.UnpicklingError(
            f"tensor {what} must be a tuple of ints, got {reprlib.repr(value)}")
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    """``torch._utils._rebuild_tensor(_v2)``: a tensor view of a storage."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"tensor storage must come from the file, got {storage!r}")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad tensor storage offset {storage_offset!r}")
    if len(size) != len(stride) or any(s < 0 for s in size + stride):
        raise pickle.UnpicklingError(f"bad tensor size {size} / stride {stride}")
    if any(n > MAX_DIMENSION for n in size):
        raise RefusedTensor(f"a tensor of size {size}: a dimension over {MAX_DIMENSION:,}")
    elements = math.prod(size)
    if elements > storage.numel:
        raise RefusedTensor(
            f"a tensor of size {size} with stride {stride} has {elements:,} elements over a "
            f"storage of {storage.numel:,}: a view that repeats elements (stride 0 or "
            "overlapping strides). Each tensor is built as its own array, so one may not hold "
            "more elements than its storage; save tensor.clone() or .contiguous() instead")
    if all(size):
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise pickle.UnpicklingError(
                f"tensor of size {size}, stride {stride} at offset {storage_offset} "
                f"reaches element {last} of a storage of {storage.numel}"
            )
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *_):
    """``torch._utils._rebuild_parameter(_with_state)``: a Parameter is its tensor."""
    if not isinstance(data, _Tensor):
        raise pickle.UnpicklingError(f"a parameter must hold a tensor, got {data!r}")
    return data


def _ordered_dict(*args):
    if args:
        raise pickle.UnpicklingError("collections.OrderedDict called with arguments")
    return collections.OrderedDict()


def _size(*args):
    """``torch.Size(sizes)``: a tuple."""
    return tuple(*args)


class _Allowed:
    """An allowed global: calls this module's function; the pickle cannot alter it (BUILD)."""

    __slots__ = ("name", "function")

    def __init__(self, name, function):
        self.name = name
        self.function = function

    def __call__(self, *args):
        return self.function(*args)

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"unexpected state for {self.name}")


# The only globals a file may name, each answered by this module's own code.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _Allowed("OrderedDict", _ordered_dict),
    ("torch._utils", "_rebuild_tensor"): _Allowed("_rebuild_tensor", _rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Allowed("_rebuild_tensor_v2", _rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Allowed("_rebuild_parameter", _rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Allowed(
        "_rebuild_parameter_with_state", _rebuild_parameter
    ),
    ("torch", "Size"): _Allowed("Size", _size),
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}


class RefusedGlobal(pickle.UnpicklingError):
    """The file names a global outside :data:`ALLOWED_GLOBALS`."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds tensors and plain containers, and nothing else.

    ``find_class`` answers only :data:`ALLOWED_GLOBALS`; tensors come back as
    placeholders that :func:`read_pth` turns into NumPy arrays.
    """

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid):
        if (
            not isinstance(pid, tuple)
            or len(pid) not in (5, 6)
            or pid[0] != "storage"
            or not isinstance(pid[1], StorageType)
            or not isinstance(pid[2], str)
            or not isinstance(pid[4], int)
            or pid[4] < 0
        ):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError(
                "storage views (a pre-1.0 PyTorch feature) are not supported"
            )
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type, numel)
        elif storage.type.dtype != storage_type.dtype or storage.numel != numel:
            raise pickle.UnpicklingError(f"storage {key!r} is described two ways")
        return storage


def _numpy_dtype(storage_type, byteorder):
    code = "u2" if storage_type.dtype == "bf16" else storage_type.dtype
    return np.dtype(("<" if byteorder == "little" else ">") + code)


def _storage_array(storage, data, byteorder, path):
    """The storage's bytes as a 1-D array (bfloat16 widened to float32)."""
    dtype = _numpy_dtype(storage.type, byteorder)
    needed = storage.numel * dtype.itemsize
    if len(data) < needed:
        raise WeightsError(
            f"{path}: storage {storage.key!r} holds {len(data)} bytes, expected "
            f"{needed} ({storage.numel} x {storage.type}); the file is truncated or corrupt."
        )
    array = np.frombuffer(data, dtype=dtype, count=storage.numel)
    if storage.type.dtype == "bf16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(array.dtype.newbyteorder("="), copy=False)


class _Builder:
    """Turns tensor placeholders into NumPy arrays within the file's read budget."""

    def __init__(self, budget):
        self.budget = budget
        self.built = {}  # id(_Tensor) -> array: a tensor named twice is one array

    def tensor(self, value):
        if id(value) in self.built:
            return self.built[id(value)]
        base = value.storage.array
        self.budget.take(math.prod(value.size) * base.itemsize,
                         f"a tensor of size {value.size} ({base.dtype})")
        if not all(value.size):
            array = np.zeros(value.size, base.dtype)
        else:
            view = np.lib.stride_tricks.as_strided(
                base[value.offset:],
                shape=value.size,
                strides=tuple(s * base.itemsize for s in value.stride),
                writeable=False,
            )
            array = np.array(view)  # a contiguous copy, independent of the storage
        self.built[id(value)] = array
        return array

    def build(self, value, depth=0):
        """``value`` with tensor placeholders replaced by arrays, in plain containers."""
        if isinstance(value, _Tensor):
            return self.tensor(value)
        if not isinstance(value, (dict, list, tuple)):
            return value
        if depth >= MAX_DEPTH:
            raise WeightsError(
                f"{self.budget.path}: refused to load: containers nested more than {MAX_DEPTH} "
                "levels deep, or one that contains itself; a checkpoint nests a few levels.")
        if isinstance(value, dict):
            result = value.__class__() if isinstance(value, collections.OrderedDict) else {}
            for key, item in value.items():
                result[key] = self.build(item, depth + 1)
            return result
        items = [self.build(item, depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)


def is_torch_file(path):
    """Whether ``path`` is a ``torch.save`` file (zip with ``data.pkl``, or legacy)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:1] == b"\x80" and head[2:14] == LEGACY_HEAD:
        return True
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                return _zip_record(archive.namelist()) is not None
        except (zipfile.BadZipFile, OSError):
            return False
    return False


def _zip_record(names):
    """The ``<dir>/`` prefix of the zip's ``data.pkl``, or ``None``."""
    for name in names:
        parts = name.split("/")
        if len(parts) == 2 and parts[1] == "data.pkl":
            return parts[0] + "/"
    return None


def _load(handle, storages, path):
    try:
        return RestrictedUnpickler(handle, storages).load()
    except RefusedTensor as error:
        raise WeightsError(f"{path}: refused to load: {error}.") from None
    except RefusedGlobal as error:
        raise WeightsError(
            f"{path}: refused to load: the file's pickle names the global {error}, "
            "which is not a tensor, a storage or an OrderedDict (the only globals this "
            "reader rebuilds). Nothing from the file was run; loading it with an "
            "unrestricted unpickler could run code. If you trust the file, load it with PyTorch "
            "and save model.state_dict() again."
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            KeyError, AttributeError, struct.error, RecursionError, MemoryError) as error:
        raise WeightsError(
            f"{path}: not a readable PyTorch file ({type(error).__name__}: {error}). "
            "Expected the output of torch.save (zip or pre-1.6 format)."
        ) from error


def _read_zip(path, budget):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise WeightsError(f"{path}: not a zip archive or truncated ({error}).") from error
    with archive:
        prefix = _zip_record(archive.namelist())
        if prefix is None:
            raise WeightsError(
                f"{path}: a zip archive without <dir>/data.pkl, so not a torch.save file."
            )
        names = set(archive.namelist())
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder")[:16].decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise WeightsError(f"{path}: unknown byteorder {byteorder!r}.")
        storages = {}
        try:
            info = archive.getinfo(prefix + "data.pkl")
            if info.file_size > MAX_PICKLE_BYTES:
                raise WeightsError(
                    f"{path}: refused to load: its pickle ({info.filename!r}) declares "
                    f"{info.file_size:,} bytes unpacked ({info.compress_size:,} packed), over "
                    f"{MAX_PICKLE_BYTES:,}; a state dict's pickle takes a few megabytes.")
            check_zip_member(info, path, budget, "the pickle")
            obj = _load(io.BytesIO(archive.read(info)), storages, path)
            for key, storage in storages.items():
                member = f"{prefix}data/{key}"
                if member not in names:
                    raise WeightsError(f"{path}: storage {member!r} is missing from the archive.")
                storage.array = _storage_array(storage, _read_member(archive, member, storage,
                                                                     byteorder, path, budget),
                                               byteorder, path)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise WeightsError(
                f"{path}: truncated or corrupt zip archive ({type(error).__name__}: {error})."
            ) from error
    return obj


def _read_member(archive, member, storage, byteorder, path, budget):
    """A storage's bytes, read once its declared size fits the budget (no more than it needs)."""
    info = archive.getinfo(member)
    needed = storage.numel * _numpy_dtype(storage.type, byteorder).itemsize
    if info.file_size < needed:
        raise WeightsError(
            f"{path}: storage {storage.key!r} holds {info.file_size} bytes, expected "
            f"{needed} ({storage.numel} x {storage.type}); the file is truncated or corrupt."
        )
    budget.take(needed, f"storage {storage.key!r} ({storage.numel:,} x {storage.type}, "
                        f"{info.compress_size:,} bytes packed)")
    with archive.open(info) as handle:
        return handle.read(needed)


class _BoundedReader:
    """A file for the unpickler that never reads past ``end``: a pickle may claim any length."""

    def __init__(self, handle, end):
        self.handle, self.end = handle, end

    def read(self, size=-1):
        left = max(self.end - self.handle.tell(), 0)
        return self.handle.read(left if size is None or size < 0 or size > left else size)

    def readline(self, size=-1):
        return self.handle.readline(size)


def _read_legacy(path, budget):
    storages = {}
    end = os.path.getsize(path)
    with open(path, "rb") as handle:
        bounded = _BoundedReader(handle, end)
        magic = _load(bounded, {}, path)
        if magic != LEGACY_MAGIC:
            raise WeightsError(f"{path}: not a PyTorch file (bad magic number).")
        version = _load(bounded, {}, path)
        if version != LEGACY_PROTOCOL_VERSION:
            raise WeightsError(
                f"{path}: PyTorch legacy protocol version {version!r}, expected "
                f"{LEGACY_PROTOCOL_VERSION}."
            )
        info = _load(bounded, {}, path)
        byteorder = "little"
        if isinstance(info, dict) and info.get("little_endian") is False:
            byteorder = "big"
        obj = _load(bounded, storages, path)
        keys = _load(bounded, {}, path)
        if not isinstance(keys, list) or set(keys) != set(storages):
            raise WeightsError(
                f"{path}: the storage list does not match the tensors; the file is corrupt."
            )
        for key in keys:
            storage = storages[key]
            count = handle.read(8)
            if len(count) < 8:
                raise WeightsError(f"{path}: truncated before storage {key!r}.")
            (numel,) = struct.unpack("<q", count)
            if numel != storage.numel:
                raise WeightsError(
                    f"{path}: storage {key!r} has {numel} elements, the pickle says "
                    f"{storage.numel}; the file is corrupt."
                )
            nbytes = numel * _numpy_dtype(storage.type, byteorder).itemsize
            left = end - handle.tell()
            if nbytes > left:
                raise WeightsError(
                    f"{path}: storage {key!r} declares {numel:,} x {storage.type} = {nbytes:,} "
                    f"bytes, but only {left:,} bytes of the file are left; the file is "
                    "truncated or corrupt.")
            budget.take(nbytes, f"storage {key!r} ({numel:,} x {storage.type})")
            storage.array = _storage_array(storage, handle.read(nbytes), byteorder, path)
    return obj


def read_pth(path):
    """The object ``torch.save`` wrote to ``path``, with tensors as NumPy arrays.

    Only tensors, parameters, ``OrderedDict`` and the pickle's own types
    (dict, list, tuple, str, int, float, bool, None) are rebuilt.

    Args:
        path: a ``.pth`` / ``.pt`` file (zip or pre-1.6 format).

    Raises:
        WeightsError: the file names any other global (it is refused before
            anything from it runs), is not a ``torch.save`` file, is
            truncated, or declares more than it holds (see the module
            docstring: refused before anything is allocated).

    Example:
        >>> obj = read_pth("checkpoint.pth")  # doctest: +SKIP
        >>> sorted(obj)  # doctest: +SKIP
        ['epoch', 'model', 'optimizer']
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"PyTorch file not found: {path}.")
    with open(path, "rb") as handle:
        head = handle.read(16)
    budget = ReadBudget.for_file(path)
    if head.startswith(b"PK\x03\x04"):
        obj = _read_zip(path, budget)
    elif head[:1] == b"\x80" and head[2:14] == LEGACY_HEAD:
        obj = _read_legacy(path, budget)
    else:
        empty = " (an empty file)" if not head else ""
        raise WeightsError(
            f"{path}: not a PyTorch file{empty}: neither a zip archive with data.pkl nor the "
            "pre-1.6 format (magic number). Expected the output of torch.save."
        )
    return _Builder(budget).build(obj)


def _is_state_dict(value):
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) for k in value)
        and all(isinstance(v, np.ndarray) for v in value.values())
    )


def find_state_dict(obj, path="the file"):
    """The ``{name: array}`` state dict in ``obj``, also inside a checkpoint dict.

    A dict of arrays is returned as is; otherwise the first of
    :data:`STATE_DICT_KEYS` (``"state_dict"``, ``"model_state_dict"``,
    ``"model"``, ``"net"`` ...) that holds one, searched two levels deep. A
    ``module.`` prefix on every key (``nn.DataParallel``) is removed.

    Raises:
        WeightsError: no state dict found; the message lists the keys seen.
    """
    found = _search_state_dict(obj, depth=2)
    if found is None:
        seen = (sorted(k if isinstance(k, str) else reprlib.repr(k) for k in obj)
                if isinstance(obj, dict) else type(obj).__name__)
        raise WeightsError(
            f"{path}: no state dict found (a dict of tensors, at the top or under one of "
            f"{', '.join(repr(k) for k in STATE_DICT_KEYS)}); the file holds {seen}. "
            "Save model.state_dict() with torch.save."
        )
    if all(key.startswith("module.") for key in found):
        found = collections.OrderedDict((key[len("module."):], v) for key, v in found.items())
    return found


def _search_state_dict(obj, depth):
    if _is_state_dict(obj):
        return obj
    if not isinstance(obj, dict) or depth == 0:
        return None
    for key in STATE_DICT_KEYS:
        if key in obj:
            found = _search_state_dict(obj[key], depth - 1)
            if found is not None:
                return found
    return None


def read_state_dict(path):
    """:func:`read_pth`, then :func:`find_state_dict`: ``{name: NumPy array}``."""
    path = os.fspath(path)
    return find_state_dict(read_pth(path), path)


__all__ = [
    "ALLOWED_GLOBALS",
    "RestrictedUnpickler",
    "find_state_dict",
    "is_torch_file",
    "read_pth",
    "read_state_dict",
]
