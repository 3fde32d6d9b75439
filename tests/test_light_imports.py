"""The load tool and the CLI helpers run where TensorFlow and Keras are not installed.

Each check runs in a fresh interpreter whose import system refuses
``tensorflow`` and ``keras`` (a meta path finder that raises
``ModuleNotFoundError`` for them, as a machine without them would), then
uses the modules for real. The package faces (``fcn_tf``, ``fcn_tf.serve``,
``fcn_tf.weights``) import their names on first use; the last tests check
that every name they list resolves.
"""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCKED = ("tensorflow", "keras")
BLOCKER = textwrap.dedent(f"""
    import sys

    class BlockHeavy:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, BlockHeavy())
""")
REPORT = textwrap.dedent(f"""
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
    print("heavy modules loaded:", loaded)
""")


def _run_blocked(code, argv=()):
    """Run ``code`` after the blocker in a new interpreter; return the finished process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.pop("FCN_TF_DEBUG", None)
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code) + REPORT,
                           *argv], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def _assert_ran_light(out):
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "heavy modules loaded: []"


def test_the_blocker_refuses_tensorflow_and_keras():
    # The check below would pass vacuously if the blocker let TensorFlow through.
    out = _run_blocked("""
        for name in ("tensorflow", "keras"):
            try:
                __import__(name)
            except ModuleNotFoundError as error:
                assert error.name == name, error
            else:
                raise AssertionError(f"{name} was imported")
        import fcn_tf
        try:
            fcn_tf.build_model
        except ModuleNotFoundError as error:
            print("build_model needs", error.name)
    """)
    _assert_ran_light(out)
    assert "build_model needs keras" in out.stdout or "build_model needs tensorflow" in out.stdout


def test_load_tool_help_and_argument_checks_run_without_tensorflow():
    out = _run_blocked("""
        import runpy
        sys.argv = ["python -m fcn_tf.serve.load", "--help"]
        try:
            runpy.run_module("fcn_tf.serve.load", run_name="__main__", alter_sys=True)
        except SystemExit as done:
            assert done.code == 0, done.code

        from fcn_tf.serve import load
        # A server that is not on this machine is refused before any request.
        assert load.main(["--url", "http://192.0.2.1:8501", "--seconds", "1"]) == 2
        assert load.main(["--clients", "0", "--seconds", "1"]) == 2
        print("signatures:", ", ".join(load.SIGNATURES))
    """)
    _assert_ran_light(out)
    assert "usage: python -m fcn_tf.serve.load" in out.stdout
    assert "--baseline MODEL" in out.stdout
    assert "--url http://192.0.2.1:8501: expected a server on this machine" in out.stderr
    assert "--clients and --seconds: expected positive values, received 0 and 1.0" in out.stderr
    assert ("signatures: serving_bytes_png, serving_bytes, serving_png, serving_default"
            in out.stdout)


def test_load_tool_measures_a_server_without_tensorflow():
    # A stand-in server on loopback answers /readyz, /info, /metrics and predict.
    out = _run_blocked("""
        import http.server, json, threading
        from fcn_tf.serve.load import format_result, run_load

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, body, status=200):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/info":
                    self._send(json.dumps({"model": "m", "limits": {"max_batch": 4}}).encode())
                elif self.path == "/metrics":
                    self._send(b"process_resident_memory_bytes 1048576\\n")
                else:
                    self._send(b"{}")

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                ok = self.path == "/v1/models/m:predict"
                self._send(b'{"predictions": []}' if ok else b"{}", 200 if ok else 404)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}"
        result = run_load(url, clients=2, seconds=0.3, warmup_seconds=0.1, max_requests=20)
        server.shutdown()
        assert result["errors"] == 0 and result["requests"] > 0, result
        print(format_result(result))
    """)
    _assert_ran_light(out)
    assert re.search(r"^requests: [1-9][0-9]* ok, 0 errors$", out.stdout, re.MULTILINE)
    assert "server resident memory: 1 MiB idle" in out.stdout


def test_cli_helpers_run_without_tensorflow():
    out = _run_blocked("""
        import io
        from fcn_tf.utils.cli import flag_message, progress_verbosity, report_error

        assert flag_message("overwrite: exists. Pass overwrite=True",
                            {"overwrite": "--overwrite"}) == "--overwrite: exists. Pass --overwrite"
        assert progress_verbosity(True) == 0
        assert progress_verbosity(False, io.StringIO()) == 2
        assert report_error(ValueError("checkpoint: not found"), {"checkpoint": "--model"}) == 2
    """)
    _assert_ran_light(out)
    assert "error: --model: not found" in out.stderr


@pytest.mark.parametrize("package", ["fcn_tf", "fcn_tf.serve", "fcn_tf.weights"])
def test_every_name_a_package_face_lists_resolves(package):
    module = __import__(package, fromlist=["__all__"])
    for name in module.__all__:
        value = getattr(module, name)
        assert getattr(value, "__name__", name) == name, (package, name, value)
        assert name in dir(module)


def test_a_face_reads_submodules_and_refuses_unknown_names():
    import fcn_tf

    assert fcn_tf.models.unet.unet_valid_output_size(572) == 388
    with pytest.raises(AttributeError, match="module 'fcn_tf' has no attribute 'no_such_name'"):
        fcn_tf.no_such_name  # noqa: B018
