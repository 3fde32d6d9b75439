"""A tiny writer of ``torch.save`` files, in pure Python, for tests (no torch).

Writes the two formats ``fcn_tf.weights.torch_pickle`` reads: the zip format
(``<dir>/data.pkl``, ``<dir>/data/<key>``, ``<dir>/byteorder``) and the
pre-1.6 legacy format (magic, protocol, system info, object, storage keys,
then each storage as its element count and its bytes). The object pickle is
assembled opcode by opcode (protocol 2), the way ``torch.save`` lays it out:
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
OrderedDict())`` with the storage a persistent id.
"""

import collections
import dataclasses
import io
import pickle
import struct
import zipfile

import numpy as np

STORAGE_NAMES = {
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float32"): "FloatStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("int16"): "ShortStorage",
    np.dtype("int8"): "CharStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclasses.dataclass
class Tensor:
    """A tensor view of a named storage: ``storages[key][offset + sum(i * stride)]``."""

    key: str
    offset: int
    shape: tuple
    stride: tuple


@dataclasses.dataclass
class Global:
    """A raw ``GLOBAL module name`` followed by ``REDUCE`` of ``args`` (to test refusals)."""

    module: str
    name: str
    args: tuple


class _Emitter:
    def __init__(self, storages, legacy):
        self.out = io.BytesIO()
        self.storages = storages
        self.legacy = legacy

    def op(self, data):
        self.out.write(data)

    def global_(self, module, name):
        self.op(b"c" + f"{module}\n{name}\n".encode())

    def value(self, value):
        if value is None:
            self.op(b"N")
        elif value is True or value is False:
            self.op(b"\x88" if value else b"\x89")
        elif isinstance(value, int):
            if -(2**31) <= value < 2**31:
                self.op(b"J" + struct.pack("<i", value))
            else:
                data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
                self.op(b"\x8a" + bytes([len(data)]) + data)
        elif isinstance(value, float):
            self.op(b"G" + struct.pack(">d", value))
        elif isinstance(value, str):
            data = value.encode()
            self.op(b"X" + struct.pack("<I", len(data)) + data)
        elif isinstance(value, (tuple, list)):
            self.op(b"(")
            for item in value:
                self.value(item)
            self.op(b"t" if isinstance(value, tuple) else b"l")
        elif isinstance(value, dict):
            if isinstance(value, collections.OrderedDict):
                self.global_("collections", "OrderedDict")
                self.op(b")R")
            else:
                self.op(b"}")
            if value:
                self.op(b"(")
                for key, item in value.items():
                    self.value(key)
                    self.value(item)
                self.op(b"u")
        elif isinstance(value, Tensor):
            self.tensor(value)
        elif isinstance(value, Global):
            self.global_(value.module, value.name)
            self.value(tuple(value.args))
            self.op(b"R")
        else:
            raise TypeError(f"cannot write {type(value).__name__}")

    def tensor(self, tensor):
        array = self.storages[tensor.key]
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.op(b"(")
        # The persistent id: ('storage', StorageType, key, location, numel[, view]).
        self.op(b"(")
        self.value("storage")
        self.global_("torch", STORAGE_NAMES[array.dtype])
        self.value(tensor.key)
        self.value("cpu")
        self.value(int(array.size))
        if self.legacy:
            self.value(None)
        self.op(b"tQ")
        self.value(tensor.offset)
        self.value(tuple(tensor.shape))
        self.value(tuple(tensor.stride))
        self.value(False)
        self.value(collections.OrderedDict())
        self.op(b"tR")

    def pickle(self, obj):
        self.op(b"\x80\x02")
        self.value(obj)
        self.op(b".")
        return self.out.getvalue()


def contiguous(state):
    """``{name: array}`` to ``(obj, storages)``: each array its own storage."""
    storages, obj = {}, collections.OrderedDict()
    for index, (name, array) in enumerate(state.items()):
        array = np.ascontiguousarray(array)
        key = str(index)
        storages[key] = array.reshape(-1)
        strides = tuple(s // array.itemsize for s in array.strides) if array.ndim else ()
        obj[name] = Tensor(key, 0, array.shape, strides)
    return obj, storages


def save(path, obj, storages, legacy=False, record="archive"):
    """Write ``obj`` (containers of :class:`Tensor`) with ``storages`` as ``torch.save`` would."""
    if legacy:
        with open(path, "wb") as handle:
            handle.write(pickle.dumps(LEGACY_MAGIC, protocol=2))
            handle.write(pickle.dumps(1001, protocol=2))
            handle.write(pickle.dumps(
                {"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
            handle.write(_Emitter(storages, legacy=True).pickle(obj))
            handle.write(pickle.dumps(list(storages), protocol=2))
            for array in storages.values():
                handle.write(struct.pack("<q", array.size))
                handle.write(array.astype(array.dtype.newbyteorder("<")).tobytes())
        return path
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{record}/data.pkl", _Emitter(storages, legacy=False).pickle(obj))
        archive.writestr(f"{record}/byteorder", "little")
        for key, array in storages.items():
            archive.writestr(f"{record}/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
        archive.writestr(f"{record}/version", "3\n")
    return path


def save_state_dict(path, state, legacy=False, wrap=None):
    """Write ``{name: array}`` as a state dict, or inside ``{"epoch": 1, wrap: state}``."""
    obj, storages = contiguous(state)
    if wrap is not None:
        obj = {"epoch": 1, wrap: obj, "optimizer": {"lr": 0.1}}
    return save(path, obj, storages, legacy=legacy)
