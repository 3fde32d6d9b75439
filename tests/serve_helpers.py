"""Shared by the serving tests: a tiny exported model and a server subprocess on 127.0.0.1."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time

import fcn_tf
from fcn_tf.exporting import export_checkpoint

NUM_CLASSES = 3
START_TIMEOUT_S = 120


def export_tiny_model(root):
    """A tiny U-Net exported as TensorFlow Serving base folder ``root/tiny/1``; returns the base."""
    model = fcn_tf.build_model("unet", NUM_CLASSES, base_filters=4, depth=2)
    root.mkdir(parents=True, exist_ok=True)
    model.save(root / "tiny.keras")
    base = root / "tiny"
    export_checkpoint(str(root / "tiny.keras"), str(base / "1"))
    return base


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m fcn_tf.serve MODEL`` on a free 127.0.0.1 port, ready when started."""

    def __init__(self, model_dir, *flags, log_path=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fcn_tf.serve", str(model_dir), "--port", str(self.port),
             *flags], stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.wait_ready()

    def log(self):
        if not self.log_path:
            return ""
        with open(self.log_path) as f:
            return f.read()[-3000:]

    def wait_ready(self):
        ends = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < ends:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready in {START_TIMEOUT_S} s:\n{self.log()}")

    def request(self, method, path, body=None, headers=None, timeout=30):
        """``(status, parsed JSON or raw bytes, headers)`` of one request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
            data = response.read()
            try:
                data = json.loads(data)
            except ValueError:
                pass
            return response.status, data, dict(response.getheaders())
        finally:
            conn.close()

    def predict(self, request, model="tiny"):
        body = request if isinstance(request, bytes) else json.dumps(request).encode()
        return self.request("POST", f"/v1/models/{model}:predict", body)[:2]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
