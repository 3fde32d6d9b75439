"""The ASGI application: TensorFlow Serving's REST API v1, health, metrics and the web page.

Routes:

- ``POST /v1/models/NAME[/versions/N]:predict``: the predict API
  (:mod:`fcn_tf.serve.protocol`), batched (:mod:`fcn_tf.serve.batching`);
- ``GET /v1/models/NAME[/versions/N]``: version status;
  ``GET .../metadata``: the signatures;
- ``GET /healthz`` (the process answers), ``GET /readyz`` (the model has
  answered its warm-up request), ``GET /metrics`` (Prometheus text);
- ``GET /`` the web page, ``/static/...`` its files, ``GET /info`` what the
  page needs (class names, colours, limits).

Every error is ``{"error": "..."}`` with a 4xx status (5xx only for the
server's own state: 503 not ready or overloaded, 504 deadline exceeded), the
HTTP-level ones included (:mod:`fcn_tf.serve.connection`). As in TensorFlow
Serving, ``/v1/models``, ``/versions/``, ``/labels/``, ``/metadata`` and the
verb match in any case; the model name is case-sensitive.

Example:
    >>> from fcn_tf.serve.app import ServeConfig, create_app   # doctest: +SKIP
    >>> app = create_app(load_served_model("runs/default"), ServeConfig())  # doctest: +SKIP
"""

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import time
import urllib.parse

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fcn_tf.serve.batching import Batcher, QueueFull
from fcn_tf.serve.connection import MAX_HEAD_BYTES, guarded_protocol, head_too_large
from fcn_tf.serve.metrics import Metrics
from fcn_tf.serve.protocol import (
    ApiError,
    content_encoding,
    decompress,
    error_body,
    format_predict,
    metadata_body,
    parse_predict,
)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
CLIENT_CLOSED = 499  # nginx's code for a client that went away before the answer
_TARGET = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                     r"(?:/labels/(?P<label>[^/:]+))?(?P<tail>/metadata|:[A-Za-z]+)?",
                     re.IGNORECASE)
_MODELS_PREFIX = re.compile(r"/v1/models(?=/|$)", re.IGNORECASE)
_log = logging.getLogger("fcn_tf.serve")


@dataclasses.dataclass
class ServeConfig:
    """The server's limits and batching settings (the CLI flags of the same names).

    Args:
        max_batch: the most images one model call batches (``--max-batch``).
        batch_timeout_ms: how long an open batch waits for more requests; 0
            (the default) batches only the requests already waiting, which
            under load are those that queued while the model ran.
        max_request_mb: bodies larger than this are refused with 413 before
            they are read.
        max_pixels: requests holding more pixels (all images together) are
            refused with 413, encoded images before decoding.
        request_timeout_s: the deadline for answering a request once its body
            has arrived (504 after it).
        body_timeout_s: the time a client has to send its whole body once its
            headers are in (408 after), and to start taking its answer.
        header_timeout_s: the time a client has to send a request's headers
            once their first byte has arrived (408 after; slowloris).
        idle_timeout_s: how long a connection with no request under way (a new
            one, or one between requests) stays open.
        max_queue: the most requests waiting for the model (503 beyond).
        max_images: the most images one request may hold (413 beyond).
    """

    max_batch: int = 8
    batch_timeout_ms: float = 0.0
    max_request_mb: float = 32.0
    max_pixels: int = 4 * 1024 * 1024
    request_timeout_s: float = 30.0
    body_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 5.0
    max_queue: int = 256
    max_images: int = 512

    def __post_init__(self):
        for name in ("max_batch", "max_request_mb", "max_pixels", "request_timeout_s",
                     "body_timeout_s", "header_timeout_s", "idle_timeout_s", "max_queue",
                     "max_images"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: expected a positive number, received "
                                 f"{getattr(self, name)!r}.")
        if self.batch_timeout_ms < 0:
            raise ValueError(f"batch_timeout_ms: expected 0 or more, received "
                             f"{self.batch_timeout_ms!r}.")

    @property
    def max_request_bytes(self):
        return int(self.max_request_mb * 1024 * 1024)


def connection_protocol(config):
    """The uvicorn protocol class (``uvicorn.Config(http=...)``) with ``config``'s timeouts."""
    return guarded_protocol(config.idle_timeout_s, config.header_timeout_s,
                            config.body_timeout_s)


def _route_label(path):
    lower = path.lower()
    if _MODELS_PREFIX.match(path):
        if lower.endswith(":predict"):
            return "predict"
        return "metadata" if lower.endswith("/metadata") else "status"
    if path in ("/healthz", "/readyz", "/metrics", "/info"):
        return path[1:]
    return "page" if path == "/" or path.startswith("/static/") else "other"


class _MetricsMiddleware:
    """Counts every HTTP request by route and status, with its latency."""

    def __init__(self, app, metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_recording(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            self.metrics.observe_request(_route_label(scope["path"]), status["code"],
                                         time.perf_counter() - start)


def _request_target(scope):
    """``scope``'s path with ``/v1/models`` in lower case and an absolute-form target cut."""
    path = scope["path"]
    if not path.startswith("/"):  # absolute form: POST http://host/v1/... HTTP/1.1
        parts = urllib.parse.urlsplit(path)
        if parts.scheme in ("http", "https"):
            path = parts.path or "/"
    match = _MODELS_PREFIX.match(path)
    if match:
        path = "/v1/models" + path[match.end():]
    return path


def _head_bytes(scope):
    target = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
    return len(target) + len(scope.get("query_string", b"")) + sum(
        len(name) + len(value) + 4 for name, value in scope["headers"])


class _HeadMiddleware:
    """Checks a request head, then normalises its target (:func:`_request_target`).

    431 for a head over MAX_HEAD_BYTES (h11 only measures one that arrives in
    pieces; one sent in a single packet is measured here), 400 for an HTTP
    version other than 1.0 and 1.1 (h11 parses ``PRI * HTTP/2.0``).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            size = _head_bytes(scope)
            if size > MAX_HEAD_BYTES:
                response = _error(431, head_too_large(size), close=True)
                return await response(scope, receive, send)
            if scope.get("http_version", "1.1") not in ("1.0", "1.1"):
                response = _error(400, f"not a valid HTTP/1.1 request: HTTP/"
                                       f"{scope['http_version']} is not supported. This server "
                                       "speaks HTTP/1.1 (gRPC and HTTP/2 are not served).",
                                  close=True)
                return await response(scope, receive, send)
            path = _request_target(scope)
            if path != scope["path"]:
                scope = dict(scope, path=path)
        return await self.app(scope, receive, send)


def _error(status, message, close=False):
    """``{"error": message}`` (ASCII JSON, so any text the client sent can be quoted)."""
    headers = {"Connection": "close"} if close else None
    return Response(error_body(message), status_code=status, headers=headers,
                    media_type="application/json")


async def read_body(request, max_bytes, timeout_s):
    """The request body, refused with 413 past ``max_bytes`` and 408 past ``timeout_s``.

    A ``Content-Length`` over the limit is refused before one byte of the
    body is read; a chunked body as soon as it passes the limit.
    """
    length = request.headers.get("content-length")
    if length is not None:
        if not (length.isascii() and length.isdigit()):
            raise ApiError(400, f"Content-Length: expected a number of bytes, received {length!r}.")
        if int(length) > max_bytes:
            raise ApiError(413, f"request body too large: Content-Length {int(length):,} bytes, "
                                f"the server's --max-request-mb allows {max_bytes:,}. Send "
                                "encoded images ({\"b64\": ...}) or fewer images per request.")
    loop = asyncio.get_running_loop()
    ends = loop.time() + timeout_s
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        remaining = ends - loop.time()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(stream.__anext__(), remaining)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise ApiError(408, f"request body not received in time: {size:,} bytes arrived in "
                                f"the {timeout_s:g} s the server's --body-timeout-s allows. "
                                "Send the whole body at once.") from None
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body too large: more than {max_bytes:,} bytes (the "
                                "server's --max-request-mb). Send encoded images or fewer "
                                "images per request.")
        chunks.append(chunk)
    return b"".join(chunks)


class _State:
    def __init__(self, served, config):
        self.served = served
        self.config = config
        self.metrics = Metrics()
        self.ready = False
        self.warmup_error = None
        self.batcher = Batcher(served.run, config.max_batch, config.batch_timeout_ms / 1000.0,
                               config.max_queue, on_batch=self.metrics.observe_batch)
        self.metrics.gauges["fcn_tf_model_ready"] = (
            "1 once the model has answered its warm-up request.", lambda: int(self.ready))
        self.metrics.gauges["fcn_tf_queued_requests"] = (
            "Requests waiting for a model batch.", lambda: self.batcher.queued)

    async def warm_up(self):
        try:
            shape = await asyncio.get_running_loop().run_in_executor(None, self.served.warm_up)
        except Exception as error:  # noqa: BLE001 - reported by /readyz
            self.warmup_error = f"{type(error).__name__}: {error}"
            _log.error("warm-up failed: %s", self.warmup_error)
            return
        self.ready = True
        _log.info("model %s version %d ready (warm-up on %s)", self.served.name,
                  self.served.version, shape)


def _status_body(state):
    served = state.served
    if state.ready:
        version_state, code, message = "AVAILABLE", "OK", ""
    elif state.warmup_error:
        version_state, code, message = "END", "UNKNOWN", state.warmup_error
    else:
        version_state, code, message = "LOADING", "OK", ""
    return {"model_version_status": [{
        "version": str(served.version), "state": version_state,
        "status": {"error_code": code, "error_message": message}}]}


def _resolve_target(state, target):
    """``(tail)`` of ``/v1/models/TARGET`` after checking the model name and version."""
    served = state.served
    match = _TARGET.fullmatch(target)
    if not match:
        raise ApiError(404, f"unknown path /v1/models/{target}; expected /v1/models/"
                            f"{served.name}[/versions/N][:predict|/metadata].")
    if match["name"] != served.name:
        raise ApiError(404, f"model {match['name']!r} not found; this server serves "
                            f"{served.name!r} (GET /v1/models/{served.name}).")
    if match["label"] is not None:
        raise ApiError(404, f"version label {match['label']!r} not found; this server has no "
                            f"labels, address the version number: /versions/{served.version}.")
    version = match["version"]
    if version is not None and not (version.isascii() and version.isdigit()
                                    and int(version) == served.version):
        raise ApiError(404, f"version {version!r} of model {served.name!r} not found; the "
                            f"served version is {served.version} (the highest in the base "
                            "folder).")
    return match["tail"]


def _parse(state, body, encoding, content_type):
    """The :class:`PredictRequest` of a body: decompressed, parsed, checked against the limits.

    Anything the parser did not foresee is still the input's doing: a 400
    (logged with its traceback, so the parser can learn it).
    """
    config = state.config
    try:
        body = decompress(body, encoding, config.max_request_bytes)
        return parse_predict(body, state.served.signatures, config.max_pixels,
                             max_images=config.max_images, content_type=content_type)
    except ApiError:
        raise
    except Exception as error:  # noqa: BLE001 - an input the parser did not foresee
        _log.warning("unforeseen predict input", exc_info=True)
        raise ApiError(400, f"could not read the request: {type(error).__name__}: {error}. "
                            "Check it against docs/SERVING.md (Predict).") from None


async def _answer(state, body, encoding, content_type):
    """Parse, run (batched) and format one predict request."""
    parsed = await run_in_threadpool(_parse, state, body, encoding, content_type)
    try:
        outputs = await state.batcher.submit(parsed.images)
    except QueueFull as error:
        raise ApiError(503, f"server overloaded: {error}; retry later.") from None
    if parsed.signature.png:
        outputs = await run_in_threadpool(state.served.png_outputs, outputs["class_ids"])
    else:
        outputs = {k: outputs[k] for k in parsed.signature.outputs}
    return await run_in_threadpool(format_predict, outputs, parsed.columnar)


async def _predict(state, request, start):
    config = state.config
    if not state.ready:
        reason = state.warmup_error or "the model is still warming up"
        raise ApiError(503, f"model not ready: {reason}; retry when GET /readyz answers 200.")
    encoding = content_encoding(request.headers.get("content-encoding"))  # 415 before reading
    body = await read_body(request, config.max_request_bytes, config.body_timeout_s)
    try:
        answer = await asyncio.wait_for(
            _answer(state, body, encoding, request.headers.get("content-type")),
            config.request_timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(504, f"deadline exceeded: no answer within the server's "
                            f"--request-timeout-s {config.request_timeout_s:g} s.") from None
    millis = (time.perf_counter() - start) * 1000.0
    return Response(answer, media_type="application/json",
                    headers={"Server-Timing": f"total;dur={millis:.1f}"})


def _model_error(error):
    """400 for an input the model itself rejects (TensorFlow's InvalidArgumentError), 413
    for one it has no memory for (ResourceExhaustedError)."""
    import tensorflow as tf

    if isinstance(error, tf.errors.InvalidArgumentError):
        return ApiError(400, f"the model could not run on this input: "
                             f"{error.message.strip().splitlines()[0]}")
    if isinstance(error, tf.errors.ResourceExhaustedError):
        return ApiError(413, "the model ran out of memory on this input; send smaller or "
                             "fewer images per request (the server's --max-pixels).")
    return None


class _Endpoints:
    """The routes' endpoints, over one server's :class:`_State`."""

    def __init__(self, state):
        self.state = state
        self.served = state.served

    async def models(self, request):
        """``/v1/models/TARGET``: status, metadata or predict; every failure a JSON error."""
        try:
            return await self._models(request, time.perf_counter())
        except ApiError as error:
            if error.status >= 500:
                _log.warning("%s %s: %d %s", request.method, request.url.path, error.status,
                             error.message)
            return _error(error.status, error.message, close=error.status in (408, 413))
        except ClientDisconnect:
            _log.info("client disconnected before its request body was complete")
            return Response(status_code=CLIENT_CLOSED)
        except Exception as error:  # noqa: BLE001 - answered, the server stays up
            api_error = _model_error(error)
            if api_error is not None:
                return _error(api_error.status, api_error.message)
            _log.exception("predict failed")
            return await self.internal_error(request, error)

    async def _models(self, request, start):
        served = self.served
        tail = _resolve_target(self.state, request.path_params["target"])
        tail = tail.lower() if tail else tail
        if tail in (None, "/metadata"):
            if request.method != "GET":
                raise ApiError(405, f"{request.method} not allowed here; use GET, or POST "
                                    f"to /v1/models/{served.name}:predict.")
            body = (_status_body(self.state) if tail is None
                    else metadata_body(served.name, served.version, served.signatures))
            return JSONResponse(body)
        if tail != ":predict":
            raise ApiError(400, f"{tail[1:]!r} is not supported: this model has predict "
                                f"signatures only; POST to /v1/models/{served.name}:predict.")
        if request.method != "POST":
            raise ApiError(405, f"{request.method} not allowed for :predict; POST a JSON body.")
        return await _predict(self.state, request, start)

    async def models_root(self, request):
        name = self.served.name
        return _error(400, f"missing model name in the path: expected /v1/models/{name}"
                           f" (status), /v1/models/{name}/metadata or POST "
                           f"/v1/models/{name}:predict.")

    async def healthz(self, request):
        return JSONResponse({"status": "alive"})

    async def readyz(self, request):
        if self.state.ready:
            return JSONResponse({"status": "ready"})
        reason = self.state.warmup_error or "warming up"
        return _error(503, f"not ready: {reason}")

    async def metrics(self, request):
        return Response(self.state.metrics.render(), media_type="text/plain; version=0.0.4")

    async def info(self, request):
        served, limits = self.served, dataclasses.asdict(self.state.config)
        return JSONResponse({
            "model": served.name, "version": served.version,
            "architecture": served.metadata.get("model_name"),
            "backbone": served.metadata.get("backbone"),
            "class_names": served.class_names, "colors": served.colors,
            "predict_url": f"/v1/models/{served.name}:predict", "limits": limits,
            "ready": self.state.ready})

    async def page(self, request):
        return FileResponse(os.path.join(STATIC_DIR, "index.html"))

    async def http_error(self, request, error):
        if error.status_code == 405:
            message = (f"{request.method} not allowed for {request.url.path}; see the routes "
                       "in docs/SERVING.md.")
        elif error.status_code == 404:
            message = (f"no such path {request.url.path}; the API is under "
                       f"/v1/models/{self.served.name}, the page at /.")
        else:
            message = str(error.detail)
        return _error(error.status_code, message)

    async def internal_error(self, request, error):
        return _error(500, f"internal error: {type(error).__name__}: {error}")

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.state.batcher.start()
        warm = asyncio.create_task(self.state.warm_up())
        yield
        await self.state.batcher.stop()
        warm.cancel()

    def routes(self):
        methods = ["GET", "POST", "PUT", "DELETE"]
        return [
            Route("/", self.page),
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics),
            Route("/info", self.info),
            Route("/v1/models", self.models_root, methods=methods),
            Route("/v1/models/{target:path}", self.models, methods=methods),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ]


def create_app(served, config=None):
    """The Starlette application serving ``served`` (a :class:`~fcn_tf.serve.model.ServedModel`).

    Args:
        served: the loaded model.
        config: a :class:`ServeConfig`; default limits when ``None``.
    """
    state = _State(served, config or ServeConfig())
    endpoints = _Endpoints(state)
    app = Starlette(routes=endpoints.routes(), lifespan=endpoints.lifespan,
                    exception_handlers={HTTPException: endpoints.http_error,
                                        Exception: endpoints.internal_error})
    app.state.serve = state
    return _MetricsMiddleware(_HeadMiddleware(app), state.metrics)


__all__ = ["ServeConfig", "connection_protocol", "create_app", "read_body"]
