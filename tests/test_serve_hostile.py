"""Hostile clients against ``python -m fcn_tf.serve``: no input reaches a 5xx, every error is JSON.

One server (a tiny U-Net, short connection timeouts) answers the whole
module. ``CASES`` is a table of bad (and a few odd but valid) requests, each
sent as raw bytes on its own connection to 127.0.0.1, with the status it must
get and a fragment its JSON must hold; after each, a good request must still
work. Connection-level faults follow: a client that never sends, one that
trickles its headers (slowloris) or its body, one that half-closes after its
request, pipelined requests, many idle connections.

Run as a script, it sends the same table while ``python -m fcn_tf.serve.load``
keeps a server busy and prints the status codes (docs/SERVING.md)::

    python tests/test_serve_hostile.py [--seconds 30]
"""

import argparse
import base64
import collections
import dataclasses
import gzip
import http.client
import io
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_helpers import ServerProcess, export_tiny_model  # noqa: E402

IDLE_TIMEOUT_S = 1.0
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
SERVER_FLAGS = ("--idle-timeout-s", str(IDLE_TIMEOUT_S), "--header-timeout-s",
                str(HEADER_TIMEOUT_S), "--body-timeout-s", str(BODY_TIMEOUT_S))
PREDICT = "/v1/models/tiny:predict"
ANSWER_TIMEOUT_S = 15.0


@dataclasses.dataclass(frozen=True)
class Case:
    """One row: ``request`` (raw bytes, one connection) must get ``status`` with ``fragment``.

    ``fragment`` is looked for in the ``"error"`` message of an error, in the
    whole JSON body of a 2xx answer.
    """

    kind: str
    request: bytes
    status: int
    fragment: str


def req(method="POST", path=PREDICT, body=b"", headers=(), version="HTTP/1.1", length=True):
    """Raw bytes of one request; ``body`` a dict/list is sent as JSON."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    lines = [f"{method} {path} {version}".encode("latin-1"), b"Host: 127.0.0.1"]
    lines += [h if isinstance(h, bytes) else h.encode("latin-1") for h in headers]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _b64(data):
    return {"b64": base64.b64encode(data).decode()}


def _png_header(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def _bmp_header(width, height):
    return b"BM" + b"\0" * 16 + struct.pack("<ii", width, height) + b"\0" * 28


IMG = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
PIXELS = IMG.tolist()
PNG = _png(IMG)
GOOD = {"instances": [PIXELS]}
BYTES = "serving_bytes"

CASES = [
    # --- found by the first sweep (issue 26) ---
    Case("signature_name_list", req(body={"signature_name": ["serving_default"],
                                           "instances": [PIXELS]}),
         400, "signature_name: expected a string"),
    Case("signature_name_object", req(body={"signature_name": {"name": "serving_default"},
                                             "instances": [PIXELS]}),
         400, "signature_name: expected a string"),
    Case("json_nested_100000_deep",
         req(body=b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
         400, "nested too deeply"),
    Case("upper_case_path_and_verb", req(path="/V1/Models/tiny:PREDICT", body=GOOD),
         200, '"predictions"'),
    Case("upper_case_versions_and_metadata", req("GET", "/v1/MODELS/tiny/Versions/1/Metadata"),
         200, '"signature_def"'),
    Case("http_layer_400_bad_request_line", b"THIS IS NOT HTTP\r\n\r\n", 400,
         "not a valid HTTP/1.1 request"),
    Case("http_layer_404", req("GET", "/nowhere"), 404, "no such path /nowhere"),
    Case("http_layer_405", req("PUT", "/healthz"), 405, "PUT not allowed for /healthz"),
    # --- odd content types and encodings ---
    Case("form_content_type", req(body=b"instances=1&signature_name=x",
                                   headers=["Content-Type: application/x-www-form-urlencoded"]),
         400, "Content-Type application/x-www-form-urlencoded"),
    Case("multipart_upload", req(body=b"--xyz\r\nContent-Disposition: form-data; name=\"f\""
                                       b"\r\n\r\n\x89PNG...\r\n--xyz--\r\n",
                                  headers=["Content-Type: multipart/form-data; boundary=xyz"]),
         400, "Content-Type multipart/form-data"),
    Case("text_plain_with_valid_json", req(body=GOOD, headers=["Content-Type: text/plain"]),
         200, '"predictions"'),
    Case("gzip_body_accepted", req(body=gzip.compress(json.dumps(GOOD).encode()),
                                    headers=["Content-Encoding: gzip"]), 200, '"predictions"'),
    Case("gzip_bomb", req(body=gzip.compress(b" " * (40 * 2**20)),
                           headers=["Content-Encoding: gzip"]), 413, "uncompressed"),
    Case("not_really_gzip", req(body=b"plain text", headers=["Content-Encoding: gzip"]),
         400, "not valid gzip"),
    Case("brotli_body", req(body=b"\x1b\x00", headers=["Content-Encoding: br"]),
         415, "Content-Encoding 'br'"),
    Case("empty_body", req(body=b""), 400, "the body is empty"),
    # --- the HTTP layer ---
    Case("huge_header_20_kb", req(body=GOOD, headers=["X-Junk: " + "a" * 20_000]),
         431, "headers too large"),
    Case("long_url_20_kb", req("GET", "/v1/models/" + "a" * 20_000), 431, "headers too large"),
    Case("many_headers", req(body=GOOD, headers=[f"X-H{i}: {i}" for i in range(3000)]),
         431, "headers too large"),
    Case("tls_client_hello_on_plain_port",
         b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40, 400,
         "not a valid HTTP/1.1 request"),
    Case("http2_prior_knowledge", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400,
         "not a valid HTTP/1.1 request"),
    Case("missing_host_header", b"GET /healthz HTTP/1.1\r\n\r\n", 400, "Host"),
    Case("header_with_nul", req("GET", "/healthz", headers=[b"X-A: a\0b"]), 400,
         "not a valid HTTP/1.1 request"),
    Case("two_content_lengths", req(body=GOOD, headers=["Content-Length: 3"]), 400,
         "Content-Length"),
    Case("transfer_encoding_gzip", req(body=GOOD, headers=["Transfer-Encoding: gzip"],
                                        length=False), 400, "Transfer-Encoding"),
    Case("bad_chunk_size", req(body=b"zz\r\n{}\r\n0\r\n\r\n",
                                headers=["Transfer-Encoding: chunked"], length=False),
         400, "not a valid HTTP/1.1 request"),
    Case("content_length_not_a_number", req(body=b"{}", headers=["Content-Length: 1e3"],
                                             length=False), 400, "Content-Length"),
    Case("expect_100_continue_too_large",
         req(body=b"", headers=["Expect: 100-continue", "Content-Length: 999999999"],
              length=False), 413, "--max-request-mb"),
    Case("websocket_upgrade", req("GET", "/v1/models/tiny", headers=[
        "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]), 200, '"AVAILABLE"'),
    Case("absolute_form_target", req(path="http://127.0.0.1" + PREDICT, body=GOOD), 200,
         '"predictions"'),
    # --- wrong methods ---
    Case("patch_predict", req("PATCH", PREDICT, body=GOOD), 405, "PATCH not allowed"),
    Case("delete_model", req("DELETE", "/v1/models/tiny"), 405, "DELETE not allowed"),
    Case("options_predict", req("OPTIONS", PREDICT), 405, "OPTIONS not allowed"),
    Case("made_up_method", req("BREW", PREDICT, body=GOOD), 405, "BREW not allowed"),
    Case("head_predict", req("HEAD", PREDICT), 405, ""),
    Case("get_models_without_name", req("GET", "/v1/models"), 400, "missing model name"),
    # --- paths and names ---
    Case("unicode_model_name", req(path="/v1/models/t%C3%AFny:predict", body=GOOD), 404,
         "model 'tïny' not found"),
    Case("nul_in_model_name", req(path="/v1/models/ti%00ny:predict", body=GOOD), 404,
         "not found"),
    Case("negative_version", req(path="/v1/models/tiny/versions/-1:predict", body=GOOD), 404,
         "version '-1'"),
    Case("arabic_digit_version", req(path="/v1/models/tiny/versions/%D9%A1:predict", body=GOOD),
         404, "version '١'"),
    Case("huge_version", req(path="/v1/models/tiny/versions/" + "9" * 40 + ":predict",
                              body=GOOD), 404, "served version is 1"),
    Case("static_path_traversal", req("GET", "/static/..%2f..%2fapp.py"), 404, "no such path"),
    Case("unicode_signature_name", req(body={"signature_name": "serving_défault",
                                              "instances": [PIXELS]}),
         400, "unknown signature_name 'serving_défault'"),
    Case("lone_surrogate_signature_name",
         req(body=b'{"signature_name": "\\ud800", "instances": [[[[1, 2, 3]]]]}'),
         400, "unknown signature_name"),
    Case("lone_surrogate_input_name",
         req(body=b'{"instances": [{"\\udfff": [[[1, 2, 3]]]}]}'), 400, "unknown input name"),
    Case("empty_signature_name_is_the_default", req(body={"signature_name": "",
                                                           "instances": [PIXELS]}),
         200, '"predictions"'),
    Case("signature_name_null", req(body={"signature_name": None, "instances": [PIXELS]}),
         400, "signature_name: expected a string"),
    # --- wrong dtypes and values ---
    Case("boolean_pixels", req(body={"instances": [[[[True, False, True]]]]}), 400, "booleans"),
    Case("null_pixels", req(body={"instances": [[[[None, None, None]]]]}), 400,
         "expected uint8 pixels"),
    Case("huge_integer_pixels", req(body=b'{"instances": [[[[1, 2, 100000000000000000000000]]]]}'),
         400, "0-255"),
    Case("nan_pixels", req(body=b'{"instances": [[[[NaN, 1, 2]]]]}'), 400, "floating-point"),
    Case("instances_a_string", req(body={"instances": "abc"}), 400, "expected a list"),
    Case("pixels_and_bytes_mixed", req(body={"instances": [PIXELS, _b64(PNG)]}), 400,
         "serving_bytes"),
    # --- bad base64 and bad image bytes ---
    Case("b64_not_a_string", req(body={"signature_name": BYTES, "instances": [{"b64": 12}]}),
         400, '{"b64": "BASE64"}'),
    Case("b64_empty", req(body={"signature_name": BYTES, "instances": [{"b64": ""}]}), 400,
         "received 0 bytes"),
    Case("b64_url_safe_alphabet", req(body={"signature_name": BYTES, "instances": [
        {"b64": base64.urlsafe_b64encode(b"\xfb\xff\xfe" * 4).decode()}]}), 400,
         "not valid base64"),
    Case("png_header_0x0", req(body={"signature_name": BYTES,
                                      "instances": [_b64(_png_header(0, 0))]}), 400,
         "0x0 pixels"),
    Case("bmp_header_2_billion_rows", req(body={"signature_name": BYTES, "instances": [
        _b64(_bmp_header(4, -2**31))]}), 413, "--max-pixels"),
    Case("gif_header_only", req(body={"signature_name": BYTES,
                                       "instances": [_b64(b"GIF89a\x10\x00\x10\x00")]}), 400,
         "truncated"),
    Case("jpeg_markers_only", req(body={"signature_name": BYTES,
                                         "instances": [_b64(b"\xff\xd8\xff\xe0" + b"\0" * 4)]}),
         400, "JPEG"),
    # --- sizes and counts ---
    Case("one_by_one_image", req(body={"instances": [[[[1, 2, 3]]]]}), 200, '"predictions"'),
    Case("too_many_images", req(body={"instances": [[[[1, 2, 3]]]] * 2000}), 413,
         "--max-images"),
    Case("too_many_encoded_images", req(body={"signature_name": BYTES,
                                               "instances": [_b64(PNG)] * 600}), 413,
         "--max-images"),
]


class _Stream:
    """One buffered reader of a socket, for reading several answers in a row
    (http.client closes its reader after each answer; this one stays open)."""

    def __init__(self, sock):
        self._file = sock.makefile("rb")

    def makefile(self, mode):
        return self

    def close(self):
        pass

    def __getattr__(self, name):
        return getattr(self._file, name)


def read_response(sock, method=b"POST"):
    """``(status, body bytes)`` of the next answer on ``sock`` (a socket or a
    :class:`_Stream` of one); ``(None, reason)`` without one."""
    response = http.client.HTTPResponse(sock, method=method.decode("latin-1"))
    try:
        response.begin()
        return response.status, response.read()
    except (http.client.HTTPException, OSError) as error:
        return None, f"no answer: {type(error).__name__}: {error}".encode()
    finally:
        if isinstance(sock, socket.socket):
            response.close()


def send(port, request, timeout=ANSWER_TIMEOUT_S):
    """``(status, body)`` of one raw request on a fresh connection to 127.0.0.1:``port``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except OSError:
            pass  # the server may answer and close before it has read everything
        return read_response(sock, request.split(b" ", 1)[0])


def verdict(case, status, body):
    """``"good"``, ``"unclear"`` (a JSON 4xx, but not the one expected) or ``"bad"``."""
    if status is None or status >= 500:
        return "bad"
    if case.kind == "head_predict":  # a HEAD answer has no body
        return "good" if status == case.status else "unclear"
    try:
        answer = json.loads(body)
    except ValueError:
        return "bad"
    if (status < 300) != (case.status < 300):
        return "bad"
    if status < 300:
        ok = case.fragment in json.dumps(answer, ensure_ascii=False)
    else:
        if not (isinstance(answer, dict) and set(answer) == {"error"}):
            return "bad"
        ok = case.fragment in answer["error"]
    return "good" if ok and status == case.status else "unclear"


def sweep(port):
    """``[(case, status, body, verdict)]`` of every case, one connection each."""
    results = []
    for case in CASES:
        status, body = send(port, case.request)
        results.append((case, status, body, verdict(case, status, body)))
    return results


# --- the table, against one server ------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = export_tiny_model(tmp_path_factory.mktemp("hostile"))
    process = ServerProcess(base, *SERVER_FLAGS, "--max-images", "512",
                            log_path=tmp_path_factory.mktemp("hostile_log") / "server.log")
    yield process
    process.stop()


def _good_request_works(server):
    status, answer = server.predict(GOOD)
    assert status == 200, answer


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_hostile_request_gets_its_json_answer(server, case):
    status, body = send(server.port, case.request)
    assert status == case.status, (status, body[:300], server.log())
    if case.kind != "head_predict":
        answer = json.loads(body)
        if status >= 300:
            assert set(answer) == {"error"}, answer
            assert case.fragment in answer["error"], answer
        else:
            assert case.fragment in json.dumps(answer, ensure_ascii=False)
    _good_request_works(server)


# --- connection-level faults ------------------------------------------------------


def _closed_after(sock, limit):
    """Seconds until the server closes ``sock`` (reading what it sends), or None."""
    start = time.monotonic()
    sock.settimeout(limit)
    received = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return time.monotonic() - start, received
            received += data
    except TimeoutError:
        return None, received
    except ConnectionResetError:
        return time.monotonic() - start, received


def test_idle_connection_is_closed_after_the_idle_timeout(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        took, received = _closed_after(sock, IDLE_TIMEOUT_S + 5)
    assert took is not None, "an idle connection stayed open"
    assert IDLE_TIMEOUT_S - 0.2 < took < IDLE_TIMEOUT_S + 1.5, took
    assert received == b""
    _good_request_works(server)


def test_slowloris_headers_are_cut_off_with_408(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    start = time.monotonic()
    lines = [b"POST " + PREDICT.encode() + b" HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n"]
    lines += [b"X-Slow-%d: %d\r\n" % (i, i) for i in range(40)]
    answer = b""
    try:
        for line in lines:  # one header line every 0.4 s, never the blank line
            sock.sendall(line)
            sock.settimeout(0.4)
            try:
                data = sock.recv(65536)
                answer += data
                if not data:
                    break
            except TimeoutError:
                continue
    except (BrokenPipeError, ConnectionResetError):
        pass
    took = time.monotonic() - start
    rest, more = _closed_after(sock, 5)
    sock.close()
    answer += more
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert "--header-timeout-s" in error
    assert took < HEADER_TIMEOUT_S + 1.5, took
    _good_request_works(server)


def test_body_trickled_after_an_early_answer_is_cut_off(server):
    # A 404 is answered at once; the client then trickles its announced body.
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(req(path="/v1/models/nope:predict", body=b"x" * 1000)[:-990])
    start = time.monotonic()
    status, _ = read_response(sock)
    assert status == 404
    closed = False
    while time.monotonic() - start < BODY_TIMEOUT_S + 5:
        try:
            sock.sendall(b"x")
            time.sleep(0.3)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
    took = time.monotonic() - start
    sock.close()
    assert closed, "a trickled body kept the connection open"
    assert took < BODY_TIMEOUT_S + 2.5, took
    _good_request_works(server)


def test_half_closed_client_gets_its_answer(server):
    body = json.dumps(GOOD).encode()
    for path in (PREDICT, "/v1/models/tiny", "/nowhere"):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT_S)
        sock.sendall(req("POST" if path == PREDICT else "GET", path,
                          body if path == PREDICT else b""))
        sock.shutdown(socket.SHUT_WR)
        status, answer = read_response(sock)
        sock.close()
        assert status == (200 if path != "/nowhere" else 404), (path, status, answer[:200])
        assert json.loads(answer)


def test_pipelined_requests_are_all_answered_in_order(server):
    requests = [req("GET", "/healthz"), req(body=GOOD), req("GET", "/nowhere"),
                req("GET", "/readyz")]
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(b"".join(requests))
        sock.shutdown(socket.SHUT_WR)
        stream = _Stream(sock)
        statuses = [read_response(stream, r.split(b" ", 1)[0])[0] for r in requests]
    assert statuses == [200, 200, 404, 200]


def test_many_idle_connections_are_closed_and_the_server_still_answers(server):
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    try:
        _good_request_works(server)
        time.sleep(IDLE_TIMEOUT_S + 1.0)
        open_ones = 0
        for sock in socks:
            sock.settimeout(0.5)
            try:
                if sock.recv(1) != b"":
                    open_ones += 1
            except TimeoutError:
                open_ones += 1
            except ConnectionResetError:
                pass
        assert open_ones == 0
    finally:
        for sock in socks:
            sock.close()
    _good_request_works(server)


def test_client_that_never_reads_its_answers_is_cut_off(server):
    # 40 pipelined requests of about 1 MB of answer each, never read: once the
    # socket buffers are full the server waits --body-timeout-s, then gives up.
    png = _png(np.zeros((128, 128, 3), np.uint8))
    one = req(body={"signature_name": BYTES, "instances": [_b64(png)]})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    with sock:
        sock.sendall(one * 40)
        time.sleep(BODY_TIMEOUT_S + 4)
        took, received = _closed_after(sock, 10)
    assert took is not None, "a client that never reads kept its connection"
    assert received.count(b"HTTP/1.1 200") < 40
    assert "took none of its answer" in server.log()
    _good_request_works(server)


# --- the same table under load (a script, not a test) -----------------------------


def _under_load(seconds):
    from fcn_tf.serve.load import format_result, run_load

    with tempfile.TemporaryDirectory() as tmp:
        base = export_tiny_model(__import__("pathlib").Path(tmp))
        server = ServerProcess(base, *SERVER_FLAGS, log_path=os.path.join(tmp, "server.log"))
        try:
            result = {}
            load = threading.Thread(target=lambda: result.update(
                run_load(server.url, clients=4, seconds=seconds, warmup_seconds=1.0)))
            load.start()
            time.sleep(1.5)
            rounds, counts, verdicts = 0, collections.Counter(), collections.Counter()
            ends = time.monotonic() + seconds - 1.0
            while time.monotonic() < ends:
                for case, status, _, judged in sweep(server.port):
                    counts[status] += 1
                    verdicts[judged] += 1
                    if judged != "good" and rounds == 0:
                        print(f"  {case.kind}: {status} ({judged})")
                rounds += 1
            load.join()
            print(f"{rounds} rounds of {len(CASES)} hostile requests during the load:")
            print("  status codes: " + ", ".join(f"{s}: {n}" for s, n in sorted(
                counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))))
            print("  verdicts: " + ", ".join(f"{v}: {n}" for v, n in sorted(verdicts.items())))
            print("the load meanwhile:\n" + format_result(result))
            print(f"server still alive: {server.process.poll() is None}")
        finally:
            server.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description="The hostile table while a load runs.")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--port", type=int,
                        help="only sweep a server already running on 127.0.0.1:PORT, once")
    args = parser.parse_args(argv)
    if args.port:
        results = sweep(args.port)
        for case, status, body, judged in results:
            print(f"{judged:8s} {status} {case.kind}: {body[:160]!r}")
        print(collections.Counter(r[3] for r in results))
        return 0
    _under_load(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
