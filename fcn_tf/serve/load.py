"""``python -m fcn_tf.serve.load``: N concurrent clients against a local server for T seconds.

Each client thread keeps one HTTP connection to the server on this machine
and posts the same predict request again and again until ``--seconds`` have
passed (or ``--max-requests`` in all), after ``--warmup-seconds`` of the same
load. It prints requests/s and images/s, p50/p95/p99 latency, the error count,
the server's mean batch size and its resident memory idle, after the warm-up
and after the run (from ``/metrics``). With ``--baseline MODEL`` it first
calls the same SavedModel in this process on the same image while the server
is idle, one image per call and the server's ``--max-batch`` images per call:
the server's throughput over those is its overhead as a ratio. Only loopback
addresses are accepted. If the server stops answering during the run (it
exited, say), the figures measured until then are still printed, with the
errors counted by kind.

Example:
    python -m fcn_tf.serve runs/default &
    python -m fcn_tf.serve.load --clients 16 --seconds 60 --baseline runs/default
"""

import argparse
import base64
import collections
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse

import numpy as np

from fcn_tf.signatures import (
    SERVED_SIGNATURES,
    SIGNATURE_BYTES,
    SIGNATURE_BYTES_PNG,
    SIGNATURE_IMAGES,
)
from fcn_tf.utils.cli import report_error

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "samples",
                      "shapes_1.png")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SIGNATURES = SERVED_SIGNATURES


def _connection(url, timeout=60.0):
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)


def _get(url, path):
    conn = _connection(url, timeout=10.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def server_metrics(url):
    """``{name: value}`` of the unlabelled series of the server's ``/metrics``.

    ``{}`` when the server does not answer (it may have exited).
    """
    try:
        status, text = _get(url, "/metrics")
    except (OSError, http.client.HTTPException):
        return {}
    if status != 200:
        return {}
    values = {}
    for line in text.decode().splitlines():
        match = re.fullmatch(r"([a-z_]+) ([0-9.e+-]+)", line)
        if match:
            values[match[1]] = float(match[2])
    return values


def wait_ready(url, timeout_s=120.0):
    """Poll ``/readyz`` until 200; raise ``TimeoutError`` after ``timeout_s``."""
    ends = time.monotonic() + timeout_s
    while time.monotonic() < ends:
        try:
            if _get(url, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"--url {url}: /readyz did not answer 200 within {timeout_s:g} s; is "
                       "python -m fcn_tf.serve running there?")


def request_body(image_path, signature):
    """The JSON body of one predict request for ``image_path`` with ``signature``."""
    with open(image_path, "rb") as f:
        data = f.read()
    if signature in (SIGNATURE_BYTES, SIGNATURE_BYTES_PNG):
        instance = {"b64": base64.b64encode(data).decode()}
    else:
        from PIL import Image

        with Image.open(image_path) as im:
            instance = np.asarray(im.convert("RGB")).tolist()
    return json.dumps({"signature_name": signature, "instances": [instance]}).encode(), data


def percentile(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


def run_clients(url, path, body, clients, seconds, max_requests):
    """``(latencies_s, errors, first_error, elapsed_s, errors_by_kind)`` of ``clients`` threads.

    Each posts ``body`` again and again; an error is an answer other than a
    200 with predictions, or a connection that failed. A client whose
    connection is refused waits 50 ms before it tries again.
    """
    latencies, errors, first_error = [], [0], [None]
    kinds = collections.Counter()
    lock = threading.Lock()
    budget = [max_requests]
    ends = time.monotonic() + seconds

    def client():
        conn = _connection(url)
        try:
            while time.monotonic() < ends:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                start = time.perf_counter()
                kind = None
                try:
                    conn.request("POST", path, body, {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    answer = response.read()
                    ok = response.status == 200 and answer.startswith(b'{"predictions"')
                    if not ok:
                        kind = f"HTTP {response.status}"
                        problem = f"{kind}: {answer[:200]!r}"
                except (OSError, http.client.HTTPException) as error:
                    kind = type(error).__name__
                    problem = f"{kind}: {error}"
                    conn.close()
                    conn = _connection(url)
                took = time.perf_counter() - start
                with lock:
                    if kind is None:
                        latencies.append(took)
                    else:
                        errors[0] += 1
                        kinds[kind] += 1
                        first_error[0] = first_error[0] or problem
                if kind == "ConnectionRefusedError":
                    time.sleep(0.05)  # the server is gone: no busy loop
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    return latencies, errors[0], first_error[0], time.monotonic() - started, dict(kinds)


def baseline(model_path, image_bytes, signature, seconds, batch=1):
    """Images/s of the SavedModel called in this process, ``batch`` copies of the image per call."""
    import tensorflow as tf

    from fcn_tf.serve.model import resolve_model_dir

    export_dir, _, _ = resolve_model_dir(model_path)
    loaded = tf.saved_model.load(export_dir)
    if signature in (SIGNATURE_BYTES, SIGNATURE_BYTES_PNG):
        fn = loaded.signatures[SIGNATURE_BYTES]
        args = {"image_bytes": tf.constant([image_bytes] * batch)}
    else:
        fn = loaded.signatures[SIGNATURE_IMAGES]
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        args = {"images": tf.stack([image] * batch)}
    for _ in range(3):
        fn(**args)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(**args)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def run_load(url, clients=16, seconds=60.0, image=SAMPLE, signature=SIGNATURE_BYTES_PNG,
             model=None, baseline_model=None, baseline_seconds=10.0, max_requests=1_000_000,
             warmup_seconds=3.0):
    """Load-test the server at ``url``; return a dict of the measurements.

    Args:
        url: the server, on a loopback address.
        clients: concurrent client threads.
        seconds: how long they send.
        image: the image every request carries.
        signature: the signature requested (``serving_bytes_png`` by default).
        model: the model name; default the server's (``/info``).
        baseline_model: a MODEL folder to time in-process first (None: skip).
        baseline_seconds: how long the baseline runs.
        max_requests: a bound on the total number of requests.
        warmup_seconds: how long the same clients run before the measured
            period (and before the "before" memory is read).
    """
    _check_load(url, clients, seconds, signature)
    wait_ready(url)
    info = json.loads(_get(url, "/info")[1])
    path = f"/v1/models/{model or info['model']}:predict"
    body, image_bytes = request_body(image, signature)
    result = {"clients": clients, "seconds": seconds, "signature": signature,
              "image": os.path.basename(image), "request_bytes": len(body)}
    if baseline_model:
        max_batch = int(info["limits"]["max_batch"])
        result["baseline_images_per_s"] = baseline(baseline_model, image_bytes, signature,
                                                   baseline_seconds)
        result["baseline_batch"] = max_batch
        result["baseline_batched_images_per_s"] = baseline(
            baseline_model, image_bytes, signature, baseline_seconds, max_batch)
    result["rss_fresh_mb"] = server_metrics(url).get("process_resident_memory_bytes", 0) / 2**20
    # The same clients for a while first, so "before" is the memory of a warm server.
    run_clients(url, path, body, clients, warmup_seconds, max_requests)
    before = server_metrics(url)
    measured = run_clients(url, path, body, clients, seconds, max_requests)
    after = server_metrics(url)
    result.update(_summary(measured, before, after))
    if "baseline_images_per_s" in result:
        result["throughput_ratio"] = result["requests_per_s"] / result["baseline_images_per_s"]
        result["batched_throughput_ratio"] = (result["requests_per_s"]
                                              / result["baseline_batched_images_per_s"])
    return result


def _check_load(url, clients, seconds, signature):
    """Refuse a server off this machine and impossible settings, naming the flag."""
    host = urllib.parse.urlsplit(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"--url {url}: expected a server on this machine ({', '.join(LOOPBACK)})"
                         f", received host {host!r}.")
    if clients < 1 or seconds <= 0:
        raise ValueError(f"--clients and --seconds: expected positive values, received "
                         f"{clients} and {seconds}.")
    if signature not in SIGNATURES:
        raise ValueError(f"--signature: expected one of {', '.join(SIGNATURES)}, received "
                         f"{signature!r}.")


def _summary(measured, before, after):
    """The figures of one :func:`run_clients` period and the server metrics around it."""
    latencies, errors, first_error, elapsed, kinds = measured
    done = len(latencies)
    batches = images = 0
    if before and after:
        batches = after.get("fcn_tf_batch_size_count", 0) - before.get("fcn_tf_batch_size_count", 0)
        images = after.get("fcn_tf_batch_size_sum", 0) - before.get("fcn_tf_batch_size_sum", 0)
    summary = {
        "requests": done, "errors": errors, "first_error": first_error, "errors_by_kind": kinds,
        "server_answered_after": bool(after),
        "elapsed_s": elapsed, "requests_per_s": done / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_batch": images / batches if batches else float("nan"),
        "rss_before_mb": before.get("process_resident_memory_bytes", 0) / 2**20,
        "rss_after_mb": after.get("process_resident_memory_bytes", 0) / 2**20,
    }
    if summary["rss_before_mb"] and summary["rss_after_mb"]:
        summary["rss_growth"] = summary["rss_after_mb"] / summary["rss_before_mb"] - 1
    return summary


def format_result(r):
    """The printed report of a :func:`run_load` result."""
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(r.get("errors_by_kind", {}).items()))
    lines = [f"{r['clients']} clients, {r['elapsed_s']:.1f} s, {r['signature']} with "
             f"{r['image']} ({r['request_bytes']:,}-byte request)",
             f"requests: {r['requests']} ok, {r['errors']} errors"
             + (f" ({kinds}; first: {r['first_error']})" if r["first_error"] else ""),
             f"throughput: {r['requests_per_s']:.1f} requests/s (images/s), mean batch "
             f"{r['mean_batch']:.2f}",
             f"latency: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
             f"p99 {r['p99_ms']:.1f} ms"]
    if r.get("server_answered_after", True):
        lines.append(f"server resident memory: {r['rss_fresh_mb']:.0f} MiB idle, "
                     f"{r['rss_before_mb']:.0f} MiB after the warm-up, {r['rss_after_mb']:.0f} "
                     f"MiB after the run ({100 * r.get('rss_growth', 0):+.1f}%)")
    else:
        lines.append("the server did not answer /metrics after the run (did it exit?): no "
                     "batch size or memory figures; the client-side figures above are those "
                     "measured until then")
    if "baseline_images_per_s" in r:
        lines.append(f"in-process baseline (SavedModel, one image per call): "
                     f"{r['baseline_images_per_s']:.1f} images/s; server/baseline = "
                     f"{r['throughput_ratio']:.2f}")
        lines.append(f"in-process, {r['baseline_batch']} images per call (--max-batch): "
                     f"{r['baseline_batched_images_per_s']:.1f} images/s; server/that = "
                     f"{r['batched_throughput_ratio']:.2f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.serve.load",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--url", default="http://127.0.0.1:8501",
                        help="the server (loopback only; default http://127.0.0.1:8501)")
    parser.add_argument("--model", help="model name (default: the one the server serves)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send")
    parser.add_argument("--max-requests", type=int, default=1_000_000,
                        help="stop after this many requests in all")
    parser.add_argument("--image", default=SAMPLE, help="the image each request carries "
                                                        "(default: a bundled 128x128 sample)")
    parser.add_argument("--signature", default=SIGNATURE_BYTES_PNG, choices=SIGNATURES,
                        help="signature to request")
    parser.add_argument("--baseline", metavar="MODEL",
                        help="also time this SavedModel (export, base or run folder) "
                             "in-process on the same image")
    parser.add_argument("--baseline-seconds", type=float, default=10.0,
                        help="how long each baseline (1 and --max-batch images per call) runs")
    parser.add_argument("--warmup-seconds", type=float, default=3.0,
                        help="the clients run this long before the measured period")
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args(argv)
    try:
        result = run_load(args.url, args.clients, args.seconds, args.image, args.signature,
                          args.model, args.baseline, args.baseline_seconds, args.max_requests,
                          args.warmup_seconds)
    except (ValueError, FileNotFoundError, TimeoutError, OSError) as error:
        return report_error(error)
    print(format_result(result))
    if args.json:
        print(json.dumps(result))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
