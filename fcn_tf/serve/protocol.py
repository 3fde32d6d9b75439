"""TensorFlow Serving's REST API v1 in JSON: predict requests in, responses out.

A request names a signature (``signature_name``, default ``serving_default``)
and carries its input in the row format (``"instances": [one value per
image]``, each value bare or as ``{"INPUT_NAME": value}``) or the columnar
format (``"inputs": {"INPUT_NAME": [batch]}`` or ``"inputs": [batch]``).
Encoded images are ``{"b64": "..."}``. The answer mirrors it:
``{"predictions": [one dict of outputs per image]}`` or
``{"outputs": {"NAME": [batch]}}``; ``..._bytes`` outputs are ``{"b64": ...}``.

Everything a client can get wrong raises :class:`ApiError` with the HTTP
status and a message saying what was expected, what was received and what to
send instead.

Example:
    >>> parse_json(b'{"instances": []}')
    {'instances': []}
"""

import base64
import binascii
import dataclasses
import json
import re

import numpy as np

from fcn_tf.serve.image_header import ImageHeaderError, image_size

REQUEST_KEYS = ("signature_name", "instances", "inputs")
DEFAULT_SIGNATURE = "serving_default"


class ApiError(Exception):
    """A client error: ``status`` (4xx/5xx) and a message for ``{"error": ...}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class PredictRequest:
    """A parsed predict request: the signature, uint8 ``[B, H, W, 3]`` images, the format."""

    signature: object
    images: np.ndarray
    columnar: bool


def parse_json(body):
    """The JSON object of a request body; 400 for anything else."""
    try:
        value = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except UnicodeDecodeError as error:
        raise ApiError(400, f"malformed JSON: the body is not UTF-8 text ({error}). Send a "
                            "JSON object such as {\"instances\": [...]}.") from None
    except json.JSONDecodeError as error:
        raise ApiError(400, f"malformed JSON: {error.msg} at line {error.lineno} column "
                            f"{error.colno} (byte {error.pos} of {len(body)}). Send a JSON "
                            "object such as {\"instances\": [...]}.") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"expected a JSON object with \"instances\" or \"inputs\", "
                            f"received a JSON {type(value).__name__}.")
    return value


def _pixels(value, where):
    """uint8 array of a nested list of integers 0-255."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise ApiError(400, f"{where}: ragged nested lists (rows of different lengths); "
                            "expected a [height][width][3] array of integers 0-255.") from None
    kind = array.dtype.kind
    if kind == "O" or (kind not in "iuf" and array.size):
        what = {"U": "strings", "b": "booleans", "O": "objects or ragged lists"}.get(kind, kind)
        hint = (" For encoded images use \"signature_name\": \"serving_bytes\" with "
                "{\"b64\": ...}." if kind in "OU" else "")
        raise ApiError(400, f"{where}: expected uint8 pixels (integers 0-255), received "
                            f"{what}.{hint}")
    if kind == "f" and array.size:
        raise ApiError(400, f"{where}: expected uint8 pixels (integers 0-255), received "
                            "floating-point numbers. Send integers (e.g. "
                            "image.astype('uint8').tolist()).")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ApiError(400, f"{where}: expected uint8 pixels 0-255, received values from "
                            f"{array.min()} to {array.max()}.")
    return array.astype(np.uint8)


def _check_image_shape(shape, where, rank):
    want = "[height, width, 3]" if rank == 3 else "[batch, height, width, 3]"
    if len(shape) != rank or shape[-1] != 3:
        raise ApiError(400, f"{where}: expected a uint8 RGB array of shape {want}, received "
                            f"shape {list(shape)}. Gray or RGBA images: convert to RGB first.")
    if 0 in shape[-3:-1]:
        raise ApiError(400, f"{where}: expected an image of at least 1 x 1 pixels, received "
                            f"shape {list(shape)}.")


def _b64(value, where):
    if not (isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)):
        raise ApiError(400, f"{where}: expected an encoded image as {{\"b64\": \"BASE64\"}}, "
                            f"received {_short(value)}.")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as error:
        raise ApiError(400, f"{where}: the \"b64\" string is not valid base64 ({error}). "
                            "Encode the file with base64.b64encode(data).decode().") from None


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _encoded_to_pixels(value, signature, where):
    if isinstance(value, dict) and set(value) == {"b64"} and not signature.encoded:
        raise ApiError(400, f"{where}: the signature {signature.name} takes uint8 pixels, "
                            "received an encoded image {\"b64\": ...}; use \"signature_name\": "
                            "\"serving_bytes\" (or \"serving_bytes_png\") for encoded images.")


def _unwrap(item, signature, where):
    """The bare value of a row instance given bare or as ``{INPUT_NAME: value}``."""
    _encoded_to_pixels(item, signature, where)
    if isinstance(item, dict) and not (signature.encoded and set(item) == {"b64"}):
        if set(item) != {signature.input_name}:
            raise ApiError(400, f"{where}: unknown input name(s) {sorted(item)}; the "
                                f"signature {signature.name} has one input, "
                                f"{signature.input_name!r}.")
        return item[signature.input_name]
    return item


def _batch_values(request, signature):
    """``(list of per-image values, columnar)`` of a request's instances or inputs."""
    if "instances" in request:
        values = request["instances"]
        if not isinstance(values, list):
            raise ApiError(400, "\"instances\": expected a list with one entry per image, "
                                f"received a JSON {type(values).__name__}.")
        return [_unwrap(v, signature, f"instances[{i}]") for i, v in enumerate(values)], False
    values = request["inputs"]
    _encoded_to_pixels(values, signature, "\"inputs\"")
    if isinstance(values, dict) and not (signature.encoded and set(values) == {"b64"}):
        if set(values) != {signature.input_name}:
            raise ApiError(400, f"\"inputs\": unknown input name(s) {sorted(values)}; the "
                                f"signature {signature.name} has one input, "
                                f"{signature.input_name!r}.")
        values = values[signature.input_name]
    if not isinstance(values, list):
        raise ApiError(400, f"\"inputs\": expected a list [batch] for {signature.input_name!r}, "
                            f"received {_short(values)}.")
    return values, True


def decode_images(blobs, max_pixels):
    """uint8 ``[B, H, W, 3]`` of encoded images, sizes checked from headers first."""
    import tensorflow as tf

    sizes = []
    for i, data in enumerate(blobs):
        try:
            sizes.append(image_size(data))
        except ImageHeaderError as error:
            raise ApiError(400, f"image {i}: {error}.") from None
    _check_pixels(sizes, max_pixels)
    _check_one_size(sizes, "image {}")
    images = []
    for i, data in enumerate(blobs):
        try:
            image = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
            raise ApiError(400, f"image {i}: could not decode it ({_tf_message(error)}); "
                                "a truncated or corrupt file?") from None
        if image.shape[:2] != sizes[i]:
            raise ApiError(400, f"image {i}: its header says {sizes[i][0]}x{sizes[i][1]} but "
                                f"it decodes to {image.shape[0]}x{image.shape[1]}; a corrupt "
                                "file?")
        images.append(image)
    return np.stack(images)


def _tf_message(error):
    """A TensorFlow error's message without its ``{{function_node ...}}`` and ``[Op:...]``."""
    return re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", error.message).strip()


def _check_pixels(sizes, max_pixels):
    total = sum(h * w for h, w in sizes)
    if total > max_pixels:
        raise ApiError(413, f"request too large: {total:,} pixels "
                            f"({' + '.join(f'{h}x{w}' for h, w in sizes[:4])}"
                            f"{' + ...' if len(sizes) > 4 else ''}), the server's --max-pixels "
                            f"is {max_pixels:,}. Send smaller or fewer images per request.")



def _check_one_size(sizes, label):
    """All ``(height, width)`` in ``sizes`` equal, else a 400 naming the first that differs."""
    if len(set(map(tuple, sizes))) > 1:
        other = [tuple(s) == tuple(sizes[0]) for s in sizes].index(False)
        raise ApiError(400, f"mixed sizes in one request: {label.format(0)} is "
                            f"{sizes[0][0]}x{sizes[0][1]}, {label.format(other)} is "
                            f"{sizes[other][0]}x{sizes[other][1]} (height x width). Send "
                            "images of different sizes in separate requests.")


def parse_predict(body, signatures, max_pixels):
    """A :class:`PredictRequest` from a ``:predict`` body.

    Args:
        body: the request body (bytes).
        signatures: ``{name: Signature}`` of the served model.
        max_pixels: the most pixels one request may hold (413 beyond).
    """
    request = parse_json(body)
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise ApiError(400, f"unknown request key(s) {unknown}; expected "
                            f"\"signature_name\" and one of \"instances\" or \"inputs\".")
    if ("instances" in request) == ("inputs" in request):
        raise ApiError(400, "expected exactly one of \"instances\" (row format) or \"inputs\" "
                            f"(columnar format), received "
                            f"{'both' if 'inputs' in request else 'neither'}.")
    name = request.get("signature_name", DEFAULT_SIGNATURE)
    if name not in signatures:
        raise ApiError(400, f"unknown signature_name {name!r}; this model serves "
                            f"{', '.join(sorted(signatures))}.")
    signature = signatures[name]
    values, columnar = _batch_values(request, signature)
    if not values:
        raise ApiError(400, "empty batch: expected at least one image, received none.")
    if signature.encoded:
        blobs = [_b64(v, f"image {i}") for i, v in enumerate(values)]
        return PredictRequest(signature, decode_images(blobs, max_pixels), columnar)
    if columnar:
        images = _pixels(values, "\"inputs\"")
        _check_image_shape(images.shape, "\"inputs\"", 4)
    else:
        arrays = [_pixels(v, f"instances[{i}]") for i, v in enumerate(values)]
        for i, array in enumerate(arrays):
            _check_image_shape(array.shape, f"instances[{i}]", 3)
        _check_one_size([a.shape[:2] for a in arrays], "instances[{}]")
        images = np.stack(arrays)
    _check_pixels([images.shape[1:3]] * len(images), max_pixels)
    return PredictRequest(signature, images, columnar)


def _jsonable(name, value):
    if name.endswith("_bytes"):
        return [{"b64": base64.b64encode(v).decode("ascii")} for v in value]
    return np.asarray(value).tolist()


def format_predict(outputs, columnar):
    """The JSON bytes of a predict answer from ``{output name: [batch] values}``."""
    columns = {name: _jsonable(name, value) for name, value in outputs.items()}
    if columnar:
        answer = {"outputs": columns}
    else:
        count = len(next(iter(columns.values())))
        answer = {"predictions": [{name: column[i] for name, column in columns.items()}
                                  for i in range(count)]}
    return json.dumps(answer, separators=(",", ":")).encode()


def error_body(message):
    """``{"error": message}`` as JSON bytes."""
    return json.dumps({"error": message}).encode()
