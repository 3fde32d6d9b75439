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
send instead. :func:`metadata_body` is the JSON of TensorFlow Serving's
``GetModelMetadataResponse``.

Example:
    >>> parse_json(b'{"instances": []}')
    {'instances': []}
"""

import base64
import binascii
import dataclasses
import json
import re
import zlib

import numpy as np

from fcn_tf.serve.image_header import ImageHeaderError, image_size
from fcn_tf.signatures import SIGNATURE_IMAGES

REQUEST_KEYS = ("signature_name", "instances", "inputs")
DEFAULT_SIGNATURE = SIGNATURE_IMAGES  # as in TensorFlow Serving
CONTENT_ENCODINGS = ("identity", "gzip", "x-gzip")  # TensorFlow Serving also takes gzip
SIGNATURE_DEF_MAP_TYPE = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
_EXAMPLE = "Send a JSON object such as {\"instances\": [...]}."


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


def _content_type_hint(content_type):
    """A sentence for a body that is not JSON, when its Content-Type says it is something else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not media or "json" in media or media.startswith("text/"):
        return ""
    return (f" The request's Content-Type {media} is not JSON: POST the JSON object itself "
            "(Content-Type: application/json), not a form or a file upload.")


def parse_json(body, content_type=None):
    """The JSON object of a request body; 400 for anything else.

    Args:
        body: the request body (bytes or str).
        content_type: the request's Content-Type, named in the error when the
            body is not JSON and the type says it is something else.
    """
    hint = _content_type_hint(content_type)
    if not body.strip():
        raise ApiError(400, f"malformed JSON: the body is empty.{hint} {_EXAMPLE}")
    try:
        value = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    except UnicodeDecodeError as error:
        raise ApiError(400, f"malformed JSON: the body is not UTF-8 text ({error}).{hint} "
                            f"{_EXAMPLE}") from None
    except json.JSONDecodeError as error:
        raise ApiError(400, f"malformed JSON: {error.msg} at line {error.lineno} column "
                            f"{error.colno} (byte {error.pos} of {len(body)}).{hint} "
                            f"{_EXAMPLE}") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply (lists or objects inside one "
                            "another hundreds of times; an image is 3 lists deep). "
                            f"{_EXAMPLE}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"expected a JSON object with \"instances\" or \"inputs\", "
                            f"received a JSON {type(value).__name__}.")
    return value


def content_encoding(value):
    """A request's ``Content-Encoding`` (None: ``identity``), or 415 if not identity or gzip."""
    encoding = (value or "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        raise ApiError(415, f"Content-Encoding {encoding!r} not supported: send the body "
                            "uncompressed or gzip-compressed (Content-Encoding: gzip).")
    return encoding


def decompress(body, encoding, max_bytes):
    """``body`` uncompressed if ``encoding`` is gzip, at most ``max_bytes`` of it (413 beyond)."""
    if encoding not in ("gzip", "x-gzip"):
        return body
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise ApiError(400, f"Content-Encoding gzip, but the body is not valid gzip ({error}). "
                            "Compress it with gzip.compress(body), or send it uncompressed "
                            "without that header.") from None
    if len(data) > max_bytes:
        raise ApiError(413, f"request body too large: more than {max_bytes:,} bytes once "
                            "uncompressed (the server's --max-request-mb). Send encoded images "
                            "or fewer images per request.")
    if not inflater.eof:
        raise ApiError(400, "Content-Encoding gzip, but the gzip body is cut short. Send the "
                            "whole compressed body.")
    return data


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
    for i, (height, width) in enumerate(sizes):
        if not (height and width):
            raise ApiError(400, f"image {i}: its header says {height}x{width} pixels; expected "
                                "an image of at least 1 x 1 pixels.")
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


def _signature_name(request, signatures):
    """The signature a request names; ``""`` or none is ``serving_default``, as in TF Serving."""
    name = request.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise ApiError(400, f"signature_name: expected a string such as \"{DEFAULT_SIGNATURE}\","
                            f" received {_short(name)}.")
    name = name or DEFAULT_SIGNATURE
    if name not in signatures:
        raise ApiError(400, f"unknown signature_name {name!r}; this model serves "
                            f"{', '.join(sorted(signatures))}.")
    return signatures[name]


def parse_predict(body, signatures, max_pixels, max_images=None, content_type=None):
    """A :class:`PredictRequest` from a ``:predict`` body.

    Args:
        body: the request body (bytes).
        signatures: ``{name: Signature}`` of the served model.
        max_pixels: the most pixels one request may hold (413 beyond).
        max_images: the most images one request may hold (413 beyond); None:
            no limit.
        content_type: the request's Content-Type (named when the body is not
            JSON).
    """
    request = parse_json(body, content_type)
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
        raise ApiError(400, f"unknown request key(s) {unknown}; expected "
                            f"\"signature_name\" and one of \"instances\" or \"inputs\".")
    if ("instances" in request) == ("inputs" in request):
        raise ApiError(400, "expected exactly one of \"instances\" (row format) or \"inputs\" "
                            f"(columnar format), received "
                            f"{'both' if 'inputs' in request else 'neither'}.")
    signature = _signature_name(request, signatures)
    values, columnar = _batch_values(request, signature)
    if not values:
        raise ApiError(400, "empty batch: expected at least one image, received none.")
    if max_images is not None and len(values) > max_images:
        raise ApiError(413, f"request too large: {len(values):,} images, the server's "
                            f"--max-images is {max_images:,}. Send fewer images per request.")
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
    """``{"error": message}`` as JSON bytes (ASCII: any text a client sent can be quoted)."""
    return json.dumps({"error": message}).encode()


def _tensor_info(name, dtype, shape):
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in shape],
                                             "unknown_rank": False},
            "name": name}


def metadata_body(name, version, signatures):
    """TensorFlow Serving's ``GetModelMetadataResponse`` as JSON (``GET .../metadata``).

    Field for field what TensorFlow Serving sends, plus the ``"@type"`` of the
    ``google.protobuf.Any`` that holds the ``SignatureDefMap``: with it the
    answer is the protobuf JSON of the message, which
    ``google.protobuf.json_format.Parse`` reads strictly (TensorFlow Serving
    leaves it out).

    Args:
        name: the model name.
        version: the served version number.
        signatures: ``{name: Signature}`` (dtypes as ``DT_FLOAT``, ``DT_UINT8``...).
    """
    signature_def = {
        sig_name: {
            "inputs": {k: _tensor_info(f"{sig_name}_{k}:0", d, s)
                       for k, (d, s) in sig.inputs.items()},
            "outputs": {k: _tensor_info(f"StatefulPartitionedCall:{k}", d, s)
                        for k, (d, s) in sig.outputs.items()},
            "method_name": "tensorflow/serving/predict",
        } for sig_name, sig in signatures.items()}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"@type": SIGNATURE_DEF_MAP_TYPE,
                                           "signature_def": signature_def}}}
