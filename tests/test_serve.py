"""``python -m fcn_tf.serve``: TensorFlow Serving's REST API against a real server on 127.0.0.1.

One tiny U-Net is exported as a TensorFlow Serving base folder and served by
one subprocess for the module. Good requests are compared with the SavedModel
called in-process; more than twenty kinds of bad request must each get a 4xx
``{"error": ...}`` naming the problem, and the server must then answer a good
request. Unit tests cover model resolution, image headers, the batcher and
the metrics; one test sends SIGTERM with a request in flight.
"""

import asyncio
import base64
import http.server
import io
import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from fcn_tf.serve.batching import Batcher, QueueFull
from fcn_tf.serve.image_header import ImageHeaderError, image_size
from fcn_tf.serve.load import run_load
from fcn_tf.serve.metrics import Metrics
from fcn_tf.serve.model import (
    COUNTS_OUTPUT,
    PNG_OUTPUT,
    Signature,
    encode_class_png,
    resolve_model_dir,
    run_export_dir,
)
from serve_helpers import NUM_CLASSES, ServerProcess, export_tiny_model

BODY_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return export_tiny_model(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(base_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    process = ServerProcess(base_dir, "--body-timeout-s", str(BODY_TIMEOUT_S),
                            "--batch-timeout-ms", "20", log_path=log)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def signatures(base_dir):
    import tensorflow as tf

    return tf.saved_model.load(str(base_dir / "1")).signatures


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _b64(data):
    return {"b64": base64.b64encode(data).decode()}


def _images(n=2, h=16, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _assert_good_request_works(server):
    status, answer = server.predict({"instances": _images(1, 8, 8).tolist()})
    assert status == 200, answer
    assert np.asarray(answer["predictions"][0]["class_ids"]).shape == (8, 8)


# --- good requests ----------------------------------------------------------------


def test_row_and_columnar_predict_match_the_saved_model(server, signatures):
    images = _images()
    expected = signatures["serving_default"](images=images)
    status, row = server.predict({"instances": images.tolist()})
    assert status == 200, row
    assert len(row["predictions"]) == 2
    ids = np.asarray([p["class_ids"] for p in row["predictions"]])
    probs = np.asarray([p["probabilities"] for p in row["predictions"]])
    assert np.array_equal(ids, expected["class_ids"].numpy())
    assert np.abs(probs - expected["probabilities"].numpy()).max() < 1e-6
    status, named = server.predict({"signature_name": "serving_default",
                                    "instances": [{"images": image.tolist()} for image in images]})
    assert status == 200 and named == row
    status, columnar = server.predict({"inputs": {"images": images.tolist()}})
    assert status == 200, columnar
    assert np.array_equal(columnar["outputs"]["class_ids"], ids)
    status, bare = server.predict({"inputs": images.tolist()})
    assert status == 200 and bare == columnar


def test_encoded_images_and_png_output(server, signatures, base_dir):
    images = _images(2, 20, 12, seed=1)
    expected = signatures["serving_default"](images=images)["class_ids"].numpy()
    request = {"signature_name": "serving_bytes", "instances": [_b64(_png(i)) for i in images]}
    status, answer = server.predict(request)
    assert status == 200, answer
    assert np.array_equal([p["class_ids"] for p in answer["predictions"]], expected)
    # The version path addresses the same model.
    status, versioned = server.request("POST", "/v1/models/tiny/versions/1:predict",
                                       json.dumps(request).encode())[:2]
    assert status == 200 and versioned == answer
    status, answer = server.predict({"signature_name": "serving_bytes_png",
                                     "inputs": {"image_bytes": [_b64(_png(i)) for i in images]}})
    assert status == 200, answer
    metadata = json.loads((base_dir / "1" / "metadata.json").read_text())
    for i, png in enumerate(answer["outputs"][PNG_OUTPUT]):
        mask = Image.open(io.BytesIO(base64.b64decode(png["b64"])))
        assert mask.mode == "P"
        assert np.array_equal(np.asarray(mask), expected[i])
        palette = np.asarray(mask.getpalette()[: 3 * NUM_CLASSES]).reshape(-1, 3)
        assert palette.tolist() == metadata["colors"]
        counts = answer["outputs"][COUNTS_OUTPUT][i]
        assert counts == np.bincount(expected[i].ravel(), minlength=NUM_CLASSES).tolist()
    status, row = server.predict({"signature_name": "serving_png", "instances": images.tolist()})
    assert status == 200
    assert row["predictions"][1][COUNTS_OUTPUT] == answer["outputs"][COUNTS_OUTPUT][1]


def test_status_metadata_health_and_metrics(server):
    status, body, _ = server.request("GET", "/v1/models/tiny")
    assert status == 200
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    assert body["model_version_status"][0]["version"] == "1"
    status, body, _ = server.request("GET", "/v1/models/tiny/versions/1/metadata")
    assert status == 200 and body["model_spec"] == {"name": "tiny", "signature_name": "",
                                                    "version": "1"}
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "serving_bytes", "serving_png", "serving_bytes_png"}
    assert defs["serving_default"]["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in defs["serving_default"]["inputs"]["images"]["tensor_shape"]
            ["dim"]] == ["-1", "-1", "-1", "3"]
    assert set(defs["serving_bytes"]["outputs"]) == {"class_ids", "probabilities"}
    assert server.request("GET", "/healthz")[0] == 200
    assert server.request("GET", "/readyz")[:2] == (200, {"status": "ready"})
    status, text, headers = server.request("GET", "/metrics")
    text = text.decode()
    assert headers["content-type"].startswith("text/plain")
    assert 'fcn_tf_requests_total{route="predict",code="200"}' in text
    assert "fcn_tf_request_duration_seconds_bucket{route=\"predict\",le=\"+Inf\"}" in text
    assert "fcn_tf_batch_size_count" in text and "fcn_tf_model_ready 1" in text
    rss = [line for line in text.splitlines() if line.startswith("process_resident_memory_bytes")]
    assert float(rss[0].split()[1]) > 50e6
    status, info, _ = server.request("GET", "/info")
    assert info["model"] == "tiny" and len(info["class_names"]) == NUM_CLASSES
    status, page, headers = server.request("GET", "/")
    assert status == 200 and b'id="overlay"' in page and "text/html" in headers["content-type"]
    for name in ("app.js", "style.css", "samples/shapes_1.png"):
        assert server.request("GET", f"/static/{name}")[0] == 200


def _tf_serving_metadata_classes():
    """TensorFlow Serving's ``GetModelMetadataResponse`` and ``SignatureDefMap`` message classes.

    Built from descriptors (``tensorflow-serving-api`` pins a TensorFlow
    version of its own): ``ModelSpec`` (model.proto) and the two messages of
    get_model_metadata.proto, over TensorFlow's own ``SignatureDef``.
    """
    from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf import wrappers_pb2  # noqa: F401 - registers Int64Value
    from tensorflow.core.protobuf import meta_graph_pb2  # noqa: F401 - registers SignatureDef

    assert any_pb2  # registers Any
    pool = descriptor_pool.Default()
    names = ("tensorflow.serving.GetModelMetadataResponse", "tensorflow.serving.SignatureDefMap")
    try:
        descriptors = [pool.FindMessageTypeByName(n) for n in names]
    except KeyError:
        field = descriptor_pb2.FieldDescriptorProto

        def add(message, name, number, kind, type_name="", label=field.LABEL_OPTIONAL):
            added = message.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                added.type_name = type_name
            return added

        def add_map(message, full_name, name, number, value_type):
            entry = message.nested_type.add(name="".join(w.capitalize() for w in name.split("_"))
                                            + "Entry")
            entry.options.map_entry = True
            add(entry, "key", 1, field.TYPE_STRING)
            add(entry, "value", 2, field.TYPE_MESSAGE, value_type)
            add(message, name, number, field.TYPE_MESSAGE, f".{full_name}.{entry.name}",
                field.LABEL_REPEATED)

        model = descriptor_pb2.FileDescriptorProto(
            name="tensorflow_serving/apis/model.proto", package="tensorflow.serving",
            syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
        spec = model.message_type.add(name="ModelSpec")
        spec.oneof_decl.add(name="version_choice")
        add(spec, "name", 1, field.TYPE_STRING)
        add(spec, "version", 2, field.TYPE_MESSAGE, ".google.protobuf.Int64Value").oneof_index = 0
        add(spec, "version_label", 4, field.TYPE_STRING).oneof_index = 0
        add(spec, "signature_name", 3, field.TYPE_STRING)
        metadata = descriptor_pb2.FileDescriptorProto(
            name="tensorflow_serving/apis/get_model_metadata.proto", package="tensorflow.serving",
            syntax="proto3", dependency=["google/protobuf/any.proto",
                                         "tensorflow/core/protobuf/meta_graph.proto",
                                         "tensorflow_serving/apis/model.proto"])
        signature_map = metadata.message_type.add(name="SignatureDefMap")
        add_map(signature_map, names[1], "signature_def", 1, ".tensorflow.SignatureDef")
        response = metadata.message_type.add(name="GetModelMetadataResponse")
        add(response, "model_spec", 1, field.TYPE_MESSAGE, ".tensorflow.serving.ModelSpec")
        add_map(response, names[0], "metadata", 2, ".google.protobuf.Any")
        pool.Add(model)
        pool.Add(metadata)
        descriptors = [pool.FindMessageTypeByName(n) for n in names]
    return [message_factory.GetMessageClass(d) for d in descriptors]


def test_metadata_parses_strictly_as_tensorflow_servings_message(server):
    from google.protobuf import json_format
    from tensorflow.core.framework import types_pb2

    response_class, signature_map_class = _tf_serving_metadata_classes()
    status, text, _ = server.request("GET", "/v1/models/tiny/metadata")
    assert status == 200
    assert server.request("GET", "/v1/models/tiny/versions/1/metadata")[1] == text
    response = json_format.Parse(json.dumps(text), response_class())  # strict: no unknown field
    assert response.model_spec.name == "tiny" and response.model_spec.version.value == 1
    signature_map = signature_map_class()
    assert response.metadata["signature_def"].Unpack(signature_map)
    defs = signature_map.signature_def
    assert set(defs) == {"serving_default", "serving_bytes", "serving_png", "serving_bytes_png"}
    default = defs["serving_default"]
    assert default.inputs["images"].dtype == types_pb2.DT_UINT8
    assert default.outputs["probabilities"].dtype == types_pb2.DT_FLOAT
    assert default.outputs["class_ids"].dtype == types_pb2.DT_INT32
    assert defs["serving_bytes"].inputs["image_bytes"].dtype == types_pb2.DT_STRING
    assert defs["serving_png"].outputs["class_pixel_counts"].dtype == types_pb2.DT_INT64
    assert [d.size for d in default.inputs["images"].tensor_shape.dim] == [-1, -1, -1, 3]
    assert default.method_name == "tensorflow/serving/predict"
    # What TensorFlow Serving sends under "signature_def" (no "@type") parses as the map.
    bare = dict(text["metadata"]["signature_def"])
    assert bare.pop("@type") == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    assert json_format.Parse(json.dumps(bare), signature_map_class()) == signature_map


def test_concurrent_requests_of_one_size_are_batched(server):
    import concurrent.futures

    def count():
        text = server.request("GET", "/metrics")[1].decode()
        values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                      if line.startswith("fcn_tf_batch_size_"))
        return float(values["fcn_tf_batch_size_count"]), float(values["fcn_tf_batch_size_sum"])

    before = count()
    request = {"instances": _images(1, 32, 32).tolist()}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: server.predict(request)[0], range(16)))
    after = count()
    assert results == [200] * 16
    batches, images = after[0] - before[0], after[1] - before[1]
    assert images == 16
    assert batches < 16, "no two of 16 concurrent requests shared a batch"


# --- bad requests -----------------------------------------------------------------


def _png_header(width, height):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)))


PNG = _png(_images(1, 16, 16)[0])
OTHER_PNG = _png(_images(1, 16, 24)[0])
IMG = _images(1, 4, 4)[0].tolist()

# (id, path, body, status, words the message must hold)
BAD_REQUESTS = [
    ("malformed_json", None, b'{"instances": [1, 2', 400, "malformed JSON"),
    ("not_utf8", None, b'\xff\xfe{"instances"', 400, "not UTF-8"),
    ("json_not_an_object", None, b"[1, 2, 3]", 400, "expected a JSON object"),
    ("neither_instances_nor_inputs", None, {"signature_name": "serving_default"}, 400, "neither"),
    ("both_instances_and_inputs", None, {"instances": [IMG], "inputs": [IMG]}, 400, "both"),
    ("unknown_request_key", None, {"instances": [IMG], "outputs": ["x"]}, 400,
     "unknown request key"),
    ("wrong_signature", None, {"signature_name": "serving_classify", "instances": [IMG]}, 400,
     "unknown signature_name 'serving_classify'"),
    ("float_dtype", None, {"instances": [[[[0.5, 0.2, 0.1]]]]}, 400, "floating-point"),
    ("string_dtype", None, {"instances": [[[["a", "b", "c"]]]]}, 400, "strings"),
    ("out_of_uint8_range", None, {"instances": [[[[300, 0, -1]]]]}, 400, "0-255"),
    ("wrong_rank", None, {"instances": [[[1, 2, 3], [4, 5, 6]]]}, 400, "shape [2, 3]"),
    ("four_channels", None, {"instances": [[[[1, 2, 3, 4]]]]}, 400, "shape [1, 1, 4]"),
    ("ragged_rows", None, {"instances": [[[[1, 2, 3]], [[1, 2, 3], [4, 5, 6]]]]}, 400, "ragged"),
    ("empty_batch", None, {"instances": []}, 400, "empty batch"),
    ("empty_image", None, {"inputs": [[[]]]}, 400, "shape"),
    ("wrong_input_name", None, {"instances": [{"image": IMG}]}, 400, "unknown input name"),
    ("b64_to_pixel_signature", None, {"instances": [_b64(PNG)]}, 400, "serving_bytes"),
    ("bytes_not_b64_object", None, {"signature_name": "serving_bytes", "instances": ["abc"]}, 400,
     '{"b64": "BASE64"}'),
    ("garbage_b64", None, {"signature_name": "serving_bytes", "instances": [{"b64": "%%%not"}]},
     400, "not valid base64"),
    ("b64_not_an_image", None, {"signature_name": "serving_bytes",
                                "instances": [_b64(b"hello, this is text")]}, 400, "not an image"),
    ("truncated_png", None, {"signature_name": "serving_bytes",
                             "instances": [_b64(PNG[: len(PNG) // 2])]}, 400, "could not decode"),
    ("png_cut_in_header", None, {"signature_name": "serving_bytes", "instances": [_b64(PNG[:12])]},
     400, "truncated"),
    ("200_megapixel_png_header", None, {"signature_name": "serving_bytes_png",
                                        "instances": [_b64(_png_header(20000, 10000))]}, 413,
     "--max-pixels"),
    ("mixed_sizes_pixels", None, {"instances": [_images(1, 4, 4)[0].tolist(),
                                                _images(1, 4, 5)[0].tolist()]}, 400,
     "mixed sizes"),
    ("mixed_sizes_encoded", None, {"signature_name": "serving_bytes",
                                   "instances": [_b64(PNG), _b64(OTHER_PNG)]}, 400, "mixed sizes"),
    ("unknown_model", "/v1/models/nope:predict", {"instances": [IMG]}, 404,
     "model 'nope' not found"),
    ("unknown_version", "/v1/models/tiny/versions/7:predict", {"instances": [IMG]}, 404,
     "version '7'"),
    ("version_label", "/v1/models/tiny/labels/stable:predict", {"instances": [IMG]}, 404,
     "label"),
    ("classify_verb", "/v1/models/tiny:classify", {"examples": []}, 400, "predict"),
    ("unknown_path", "/v2/whatever", {"instances": [IMG]}, 404, "no such path"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_gets_a_clear_4xx_and_the_server_carries_on(server, case):
    _, path, body, status, words = case
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, answer, _ = server.request("POST", path or "/v1/models/tiny:predict", data)
    assert got == status, answer
    assert set(answer) == {"error"} and words in answer["error"], answer
    _assert_good_request_works(server)


def test_wrong_method_gets_405(server):
    status, answer, _ = server.request("GET", "/v1/models/tiny:predict")
    assert status == 405 and "POST" in answer["error"]
    status, answer, _ = server.request("POST", "/v1/models/tiny/metadata", b"{}")
    assert status == 405 and "GET" in answer["error"]
    _assert_good_request_works(server)


def _raw(server, head, body=b"", read=True, timeout=10):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    try:
        sock.sendall(head + body)
        if not read:
            return sock
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        if read:
            sock.close()


def _head(length, extra=b""):
    return (b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n" + extra
            + (b"Content-Length: %d\r\n" % length if length is not None else b"") + b"\r\n")


def _status_and_error(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body[: body.rindex(b"}") + 1])["error"]


def test_50_mb_body_is_refused_with_413_before_it_is_read(server):
    start = time.monotonic()
    raw = _raw(server, _head(50 * 2**20), b'{"instances": [' + b"0, " * 1000)
    status, error = _status_and_error(raw)
    assert status == 413 and "--max-request-mb" in error and "52,428,800" in error
    assert time.monotonic() - start < 5
    _assert_good_request_works(server)


def test_chunked_body_over_the_limit_is_refused_with_413(server):
    sock = _raw(server, _head(None, b"Transfer-Encoding: chunked\r\n"), read=False)
    chunk = b"1" * 2**20
    answer = b""
    try:
        for _ in range(40):  # 40 MiB at most, more than the default 32 MiB limit
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    status, error = _status_and_error(answer)
    assert status == 413 and "more than 33,554,432 bytes" in error
    _assert_good_request_works(server)


def test_bad_content_length_gets_400(server):
    raw = _raw(server, b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: -5\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
    _assert_good_request_works(server)


def test_slow_client_gets_408(server):
    start = time.monotonic()
    raw = _raw(server, _head(1000), b'{"instances": [')  # and then nothing more
    status, error = _status_and_error(raw)
    took = time.monotonic() - start
    assert status == 408 and "--body-timeout-s" in error
    assert BODY_TIMEOUT_S - 0.1 < took < BODY_TIMEOUT_S + 5
    _assert_good_request_works(server)


def test_client_that_disconnects_mid_body_is_counted_and_forgotten(server):
    def closed_count():
        text = server.request("GET", "/metrics")[1].decode()
        line = [ln for ln in text.splitlines() if 'code="499"' in ln]
        return float(line[0].split()[-1]) if line else 0.0

    before = closed_count()
    sock = _raw(server, _head(100_000), b'{"instances": [[[[1, 2, 3]', read=False)
    time.sleep(0.2)
    sock.close()
    for _ in range(50):
        if closed_count() > before:
            break
        time.sleep(0.1)
    assert closed_count() == before + 1
    _assert_good_request_works(server)


# --- the load tool ----------------------------------------------------------------


def test_load_tool_reports_latency_errors_and_memory(server, base_dir):
    result = run_load(server.url, clients=3, seconds=2.0, baseline_model=str(base_dir),
                      baseline_seconds=0.5, max_requests=400,
                      warmup_seconds=0.5)
    assert result["errors"] == 0, result["first_error"]
    assert result["requests"] > 0 and result["requests_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["rss_before_mb"] > 50 and result["rss_after_mb"] > 50
    assert result["baseline_images_per_s"] > 0 and result["throughput_ratio"] > 0
    assert result["baseline_batch"] == 8 and result["batched_throughput_ratio"] > 0
    with pytest.raises(ValueError, match="expected a server on this machine"):
        run_load("http://10.0.0.1:8501", seconds=1)


class _FakeServeHandler(http.server.BaseHTTPRequestHandler):
    """Answers what the load tool asks of ``python -m fcn_tf.serve``, one request per connection."""

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        self._send({"/readyz": b'{"status": "ready"}',
                    "/info": json.dumps({"model": "fake", "limits": {"max_batch": 8}}).encode(),
                    "/metrics": b"fcn_tf_batch_size_count 1\nfcn_tf_batch_size_sum 1\n"
                                b"process_resident_memory_bytes 1048576\n"}[self.path])

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(b'{"predictions": [{}]}')

    def log_message(self, *args):
        pass


def test_load_tool_prints_its_figures_when_the_server_exits_during_the_run(capsys):
    from fcn_tf.serve.load import main

    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeServeHandler)
    threading.Thread(target=fake.serve_forever, daemon=True).start()

    def exit_server():
        fake.shutdown()
        fake.server_close()

    timer = threading.Timer(1.5, exit_server)
    timer.start()
    try:
        code = main(["--url", f"http://127.0.0.1:{fake.server_address[1]}", "--clients", "2",
                     "--seconds", "2.5", "--warmup-seconds", "0.2"])
    finally:
        timer.join()
    out = capsys.readouterr().out
    assert code == 1, out
    ok = int(re.search(r"requests: (\d+) ok, (\d+) errors", out)[1])
    assert ok > 0 and "ConnectionRefusedError" in out, out
    assert "latency: p50" in out and "did not answer /metrics after the run" in out, out


# --- SIGTERM --------------------------------------------------------------------


def test_sigterm_finishes_the_request_in_flight_then_exits_0(base_dir, tmp_path):
    server = ServerProcess(base_dir, "--body-timeout-s", "20", log_path=tmp_path / "log")
    try:
        body = json.dumps({"instances": _images(1, 8, 8).tolist()}).encode()
        sock = _raw(server, _head(len(body)), body[:10], read=False)
        time.sleep(0.3)  # the request is in flight: its body is half sent
        server.process.terminate()
        time.sleep(0.5)
        assert server.process.poll() is None, "exited with a request in flight"
        sock.sendall(body[10:])
        sock.settimeout(20)
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert b'"predictions"' in answer
        assert server.process.wait(30) == 0, server.log()
        # Nothing listens any more.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        server.stop()


# --- units ------------------------------------------------------------------------


def test_resolve_model_dir_export_base_and_run_folders(base_dir, tmp_path):
    import shutil

    assert resolve_model_dir(base_dir) == (str(base_dir / "1"), 1, "tiny")
    assert resolve_model_dir(base_dir / "1") == (str(base_dir / "1"), 1, "tiny")
    versions = tmp_path / "seg"
    for version in (1, 2, 10):
        shutil.copytree(base_dir / "1", versions / str(version))
    (versions / "notes").mkdir()
    assert resolve_model_dir(versions) == (str(versions / "10"), 10, "seg")
    run = tmp_path / "myrun"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="a run folder without a SavedModel"):
        resolve_model_dir(run)
    with pytest.raises(FileNotFoundError, match="python -m fcn_tf.export --checkpoint"):
        run_export_dir(str(run))
    shutil.copytree(base_dir / "1", run / "export")
    assert resolve_model_dir(run) == (str(run / "export"), 1, "myrun")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_model_dir(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no numbered version folders"):
        resolve_model_dir(versions / "notes")


def test_cli_errors_name_the_model_and_the_flag(tmp_path, capsys):
    from fcn_tf.serve.__main__ import main

    assert main([str(tmp_path / "missing")]) == 2
    assert "MODEL" in capsys.readouterr().err
    assert main([str(tmp_path), "--max-batch", "0"]) == 2
    assert "--max-batch: expected a positive number, received 0" in capsys.readouterr().err


def test_serving_does_not_import_training():
    code = ("import sys, fcn_tf.serve.__main__, fcn_tf.serve.load; "
            "print([m for m in sys.modules if m.startswith('fcn_tf.training')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_image_size_from_headers(fmt):
    buffer = io.BytesIO()
    Image.fromarray(_images(1, 37, 53)[0]).save(buffer, format=fmt)
    assert image_size(buffer.getvalue()) == (37, 53)


def test_image_size_rejects_other_bytes():
    with pytest.raises(ImageHeaderError, match="not an image: expected JPEG, PNG"):
        image_size(b"GIF8 but not really")
    with pytest.raises(ImageHeaderError, match="truncated"):
        image_size(PNG[:20])
    assert image_size(_png_header(20000, 10000)) == (10000, 20000)


def test_batcher_batches_one_size_isolates_failures_and_bounds_its_queue():
    calls = []

    def run(images):
        calls.append(len(images))
        if (images == 13).any():
            raise ValueError("bad image")
        return {"sum": images.reshape(len(images), -1).sum(1)}

    async def scenario():
        batcher = Batcher(run, max_batch=4, batch_timeout_s=0.05, max_queue=6)
        batcher.start()
        same = [np.full((1, 2, 2, 3), v, np.uint8) for v in range(5)]
        other = np.ones((1, 3, 3, 3), np.uint8)
        results = await asyncio.gather(*[batcher.submit(x) for x in same],
                                       batcher.submit(other))
        sums = [int(r["sum"][0]) for r in results]
        calls_first = list(calls)
        calls.clear()
        bad = asyncio.gather(batcher.submit(np.full((1, 2, 2, 3), 13, np.uint8)),
                             batcher.submit(np.full((1, 2, 2, 3), 1, np.uint8)),
                             return_exceptions=True)
        bad_results = await bad
        calls_bad = list(calls)
        overflow = [batcher.submit(np.zeros((1, 1, 1, 3), np.uint8)) for _ in range(7)]
        overflow_results = await asyncio.gather(*overflow, return_exceptions=True)
        await batcher.stop()
        return sums, calls_first, bad_results, calls_bad, overflow_results

    sums, calls_first, bad_results, calls_bad, overflow = asyncio.run(scenario())
    assert sums == [12 * v for v in range(5)] + [27]
    assert calls_first == [4, 1, 1]  # four of one size, the fifth, then the other size
    assert isinstance(bad_results[0], ValueError) and int(bad_results[1]["sum"][0]) == 12
    assert calls_bad == [2, 1, 1]  # the batch failed, then each request alone
    assert sum(isinstance(r, QueueFull) for r in overflow) == 1


def test_encode_class_png_palette_and_many_classes():
    ids = np.arange(12, dtype=np.int32).reshape(3, 4) % 3
    mask = Image.open(io.BytesIO(encode_class_png(ids, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])))
    assert mask.mode == "P" and np.array_equal(np.asarray(mask), ids)
    many = np.array([[0, 300]], np.int32)
    mask = Image.open(io.BytesIO(encode_class_png(many, [[0, 0, 0]] * 301)))
    assert np.array_equal(np.asarray(mask), many)


def test_served_and_predicted_class_pngs_are_the_same_picture(tmp_path):
    # One palette (fcn_tf.data.palette.class_ids_image) for the server and predict.
    from fcn_tf.inference import save_class_png

    ids = np.array([[0, 1, 2], [2, 1, 0]], np.int32)
    colors = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    save_class_png(str(tmp_path / "a.png"), ids, colors)
    served = Image.open(io.BytesIO(encode_class_png(ids, colors)))
    saved = Image.open(tmp_path / "a.png")
    assert saved.mode == served.mode == "P"
    assert np.array_equal(np.asarray(saved), np.asarray(served))
    assert saved.getpalette() == served.getpalette()
    assert saved.getpalette()[:9] == [10, 20, 30, 40, 50, 60, 70, 80, 90]


def test_a_saved_model_without_metadata_is_refused_naming_model(tmp_path):
    from fcn_tf.serve.model import ServedModel

    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"^MODEL .*: no metadata.json in .*python -m "
                                                r"fcn_tf.export"):
        ServedModel(str(tmp_path), "m", 1)


def test_metrics_text_format():
    metrics = Metrics()
    metrics.observe_request("predict", 200, 0.02)
    metrics.observe_request("predict", 400, 0.001)
    metrics.observe_batch(3)
    text = metrics.render()
    assert 'fcn_tf_requests_total{route="predict",code="400"} 1' in text
    assert 'fcn_tf_request_duration_seconds_bucket{route="predict",le="0.025"} 2' in text
    assert 'fcn_tf_batch_size_bucket{le="4"} 1' in text and "fcn_tf_batch_size_sum 3" in text
    assert text.endswith("\n") and "# TYPE process_resident_memory_bytes gauge" in text


# --- server states, in process (a fake model, the ASGI app called directly) --------


class _FakeServed:
    """What the app needs of a ServedModel; ``run`` sleeps, warm-up waits for a go."""

    name, version, metadata = "fake", 1, {}
    class_names, colors, num_classes = ["a", "b"], [[0, 0, 0], [255, 255, 255]], 2
    signatures = {"serving_default": Signature(
        "serving_default", "images", {"images": ("DT_UINT8", [-1, -1, -1, 3])},
        {"class_ids": ("DT_INT32", [-1, -1, -1])}, encoded=False, png=False)}

    def __init__(self, delay):
        self.delay = delay
        self.go = threading.Event()

    def run(self, images):
        time.sleep(self.delay)
        return {"class_ids": np.zeros(images.shape[:3], np.int32)}

    def warm_up(self):
        assert self.go.wait(10)
        return (1, 2, 2)


async def _asgi(app, method, path, body=b""):
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"content-length", str(len(body)).encode())], "scheme": "http",
             "server": ("127.0.0.1", 8501), "client": ("127.0.0.1", 5000), "root_path": ""}
    await app(scope, receive, send)
    answer = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], json.loads(answer)


async def _with_lifespan(app, body):
    incoming = asyncio.Queue()
    outgoing = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   incoming.get, outgoing.put))
    await incoming.put({"type": "lifespan.startup"})
    assert (await outgoing.get())["type"] == "lifespan.startup.complete"
    try:
        return await body()
    finally:
        await incoming.put({"type": "lifespan.shutdown"})
        await outgoing.get()
        await task


def test_not_ready_deadline_and_full_queue_answers():
    from fcn_tf.serve.app import ServeConfig, create_app

    request = json.dumps({"instances": [[[[1, 2, 3]]]]}).encode()
    path = "/v1/models/fake:predict"

    served = _FakeServed(delay=0.5)
    app = create_app(served, ServeConfig(request_timeout_s=0.2))

    async def deadline():
        early = await _asgi(app, "POST", path, request)
        ready_early = await _asgi(app, "GET", "/readyz")
        served.go.set()
        for _ in range(100):
            if (await _asgi(app, "GET", "/readyz"))[0] == 200:
                break
            await asyncio.sleep(0.05)
        return early, ready_early, await _asgi(app, "POST", path, request)

    early, ready_early, late = asyncio.run(_with_lifespan(app, deadline))
    assert early[0] == 503 and "model not ready" in early[1]["error"]
    assert ready_early[0] == 503
    assert late[0] == 504 and "--request-timeout-s 0.2" in late[1]["error"]

    served = _FakeServed(delay=0.3)
    served.go.set()
    app = create_app(served, ServeConfig(max_batch=1, max_queue=1))

    async def crowd():
        for _ in range(100):
            if (await _asgi(app, "GET", "/readyz"))[0] == 200:
                break
            await asyncio.sleep(0.05)
        return await asyncio.gather(*[_asgi(app, "POST", path, request) for _ in range(3)])

    answers = asyncio.run(_with_lifespan(app, crowd))
    codes = sorted(status for status, _ in answers)
    assert codes.count(503) >= 1 and codes.count(200) >= 1, answers
    assert all("overloaded" in a["error"] for s, a in answers if s == 503)
