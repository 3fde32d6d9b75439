"""Request counts, latency and batch sizes in Prometheus' text exposition format.

A few counters and histograms kept in memory (no client library needed), and
the process's resident memory read from ``/proc`` when asked.

Example:
    >>> m = Metrics()
    >>> m.observe_request("predict", 200, 0.012)
    >>> 'fcn_tf_requests_total{route="predict",code="200"} 1' in m.render()
    True
"""

import collections
import os
import resource
import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def resident_memory_bytes():
    """The resident set size of this process (Linux ``/proc/self/statm``; else peak RSS)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value):
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name, labels=""):
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{b}"}} {c}'
               for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{suffix} {self.sum:.6f}", f"{name}_count{suffix} {self.count}"]
        return out


class Metrics:
    """The server's counters: requests by route and status, latency, batches, gauges."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests = collections.Counter()
        self._latency = collections.defaultdict(lambda: _Histogram(LATENCY_BUCKETS))
        self._batches = _Histogram(BATCH_BUCKETS)
        self.gauges = {}

    def observe_request(self, route, code, seconds):
        """Count one request of ``route`` answered with ``code`` after ``seconds``."""
        with self._lock:
            self._requests[(route, str(code))] += 1
            self._latency[route].observe(seconds)

    def observe_batch(self, size):
        """Count one model batch of ``size`` images."""
        with self._lock:
            self._batches.observe(size)

    def render(self):
        """The metrics as Prometheus text (``text/plain; version=0.0.4``)."""
        with self._lock:
            lines = ["# HELP fcn_tf_requests_total HTTP requests by route and status code.",
                     "# TYPE fcn_tf_requests_total counter"]
            lines += [f'fcn_tf_requests_total{{route="{r}",code="{c}"}} {n}'
                      for (r, c), n in sorted(self._requests.items())]
            lines += ["# HELP fcn_tf_request_duration_seconds Time from the request's arrival "
                      "to its answer.", "# TYPE fcn_tf_request_duration_seconds histogram"]
            for route, histogram in sorted(self._latency.items()):
                lines += histogram.lines("fcn_tf_request_duration_seconds", f'route="{route}"')
            lines += ["# HELP fcn_tf_batch_size Images per model call.",
                      "# TYPE fcn_tf_batch_size histogram"]
            lines += self._batches.lines("fcn_tf_batch_size")
            for name, (help_text, value) in sorted(self.gauges.items()):
                value = value() if callable(value) else value
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        lines += ["# HELP process_resident_memory_bytes Resident memory size in bytes.",
                  "# TYPE process_resident_memory_bytes gauge",
                  f"process_resident_memory_bytes {resident_memory_bytes()}"]
        return "\n".join(lines) + "\n"
