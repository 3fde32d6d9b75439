"""``python -m fcn_tf.serve MODEL [--name NAME] [--host 127.0.0.1] [--port 8501]``.

Serves an exported model over TensorFlow Serving's REST API v1 (so its
clients work unchanged), with a web page at ``/`` to try it on an image.
MODEL is an export folder, a TensorFlow Serving base folder (``NAME/1/``,
``NAME/2/``: the highest version is served) or a run folder (its export).
Built on Starlette and uvicorn. SIGTERM or Ctrl-C finishes the requests in
flight, then exits with status 0.
"""

import argparse
import contextlib
import signal
import sys

from fcn_tf.utils.cli import report_error
from fcn_tf.utils.logs import log_to_stderr

DEFAULT_PORT = 8501  # TensorFlow Serving's REST port


def _server_class():
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, but a SIGTERM/SIGINT ends it with status 0.

        uvicorn re-raises the signal after its graceful shutdown, so the
        process would die of it (status 143); here the signal only starts
        the graceful shutdown (stop accepting, finish requests in flight).
        """

        @contextlib.contextmanager
        def capture_signals(self):
            previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT,
                                                                        signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def _stop(self, sig, frame):
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C
            self.should_exit = True

    return GracefulServer


def build_parser():
    from fcn_tf.serve.app import ServeConfig

    defaults = ServeConfig()
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.serve",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("model", metavar="MODEL",
                        help="export folder, TensorFlow Serving base folder or run folder")
    parser.add_argument("--name", help="model name in the URLs (default: the base or run "
                                       "folder's name)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}, as TensorFlow Serving's REST API)")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch,
                        help="most images per model call when requests are batched")
    parser.add_argument("--batch-timeout-ms", type=float, default=defaults.batch_timeout_ms,
                        help="how long a batch waits for more requests of the same image "
                             "size (default 0: it takes those already waiting, i.e. those "
                             "that queued while the model ran)")
    parser.add_argument("--max-request-mb", type=float, default=defaults.max_request_mb,
                        help="larger request bodies are refused with 413 before being read")
    parser.add_argument("--max-pixels", type=int, default=defaults.max_pixels,
                        help="requests with more pixels are refused with 413 (encoded images: "
                             "from their headers, before decoding)")
    parser.add_argument("--request-timeout-s", type=float, default=defaults.request_timeout_s,
                        help="deadline of a request once its body has arrived (504 after)")
    parser.add_argument("--body-timeout-s", type=float, default=defaults.body_timeout_s,
                        help="time a client has to send its body once its headers are in (408 "
                             "after), and to start taking its answer (then it is cut off)")
    parser.add_argument("--header-timeout-s", type=float, default=defaults.header_timeout_s,
                        help="time a client has to send a request's headers once their first "
                             "byte is in (408 after; stops slowloris clients)")
    parser.add_argument("--idle-timeout-s", type=float, default=defaults.idle_timeout_s,
                        help="a connection with no request under way (new, or between "
                             "requests) is closed after this long")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue,
                        help="most requests waiting for the model (503 beyond)")
    parser.add_argument("--max-images", type=int, default=defaults.max_images,
                        help="most images in one request (413 beyond)")
    parser.add_argument("--graceful-timeout-s", type=float, default=30.0,
                        help="on SIGTERM, how long requests in flight may take before they are "
                             "cancelled")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser


_FLAGS = {"max_batch": "--max-batch", "batch_timeout_ms": "--batch-timeout-ms",
          "max_request_mb": "--max-request-mb", "max_pixels": "--max-pixels",
          "request_timeout_s": "--request-timeout-s", "body_timeout_s": "--body-timeout-s",
          "header_timeout_s": "--header-timeout-s", "idle_timeout_s": "--idle-timeout-s",
          "max_queue": "--max-queue", "max_images": "--max-images"}


def _as_flags(message):
    """A :class:`ServeConfig` error with the parameter name turned into its flag."""
    name = message.split(":", 1)[0]
    return message.replace(name, _FLAGS[name], 1) if name in _FLAGS else message


def main(argv=None):
    args = build_parser().parse_args(argv)
    from fcn_tf.serve.app import ServeConfig, connection_protocol, create_app
    from fcn_tf.serve.model import load_served_model

    log_to_stderr()  # the package's loggers only: a root handler repeats TensorFlow's warnings
    try:
        config = ServeConfig(**{name: getattr(args, name) for name in _FLAGS})
    except ValueError as error:
        return report_error(ValueError(_as_flags(str(error))))
    try:
        served = load_served_model(args.model, args.name)
    except (FileNotFoundError, ValueError) as error:
        return report_error(error)
    import uvicorn

    app = create_app(served, config)
    # h11 with the connection guards (timeouts, JSON errors, half-closes); no
    # WebSockets, so an Upgrade header is answered as a plain HTTP request.
    uv_config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info",
                               access_log=args.access_log, lifespan="on",
                               http=connection_protocol(config), ws="none",
                               timeout_keep_alive=config.idle_timeout_s,
                               timeout_graceful_shutdown=args.graceful_timeout_s)
    server = _server_class()(uv_config)
    print(f"Serving {served.name} version {served.version} from {served.path}\n"
          f"  page:    http://{args.host}:{args.port}/\n"
          f"  predict: POST http://{args.host}:{args.port}/v1/models/{served.name}:predict",
          flush=True)
    server.run()  # a port in use: uvicorn says so and exits with status 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
