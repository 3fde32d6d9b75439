"""What the command-line tools print: no TensorFlow C++ notices that are not about the run.

A training run in a subprocess, as a user starts it (no ``TF_CPP_MIN_LOG_LEVEL``
set), shows no start-up notice, no oneDNN error line about uint8 and no other
``I0000``/``E0000`` line; the filter behind it passes every other line on, also
from a process that dies inside it; the server's logging leaves the root
logger alone, so TensorFlow's warnings are printed once.
"""

import io
import logging
import os
import re
import subprocess
import sys
import textwrap

from fcn_tf.utils import logs
from train_fixtures import tiny_config, write_config

ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ", re.MULTILINE)
NOTICE_WORDS = ("oneDNN", "cpu_feature_guard", "absl::InitializeLog", "DT_UINT8")


def _user_env():
    """The environment of a user who set nothing (conftest sets TF_CPP_MIN_LOG_LEVEL)."""
    env = dict(os.environ)
    env.pop(logs.LEVEL_VARIABLE, None)
    return env


def test_a_training_log_has_no_tensorflow_cpp_lines(tmp_path):
    # Augmentation on: the crops' mask gathers and the EXIF turn are in the graph.
    config = tiny_config(tmp_path, train={"epochs": 1, "steps_per_epoch": 2})
    config["data"]["augment"] = {"enabled": True, "rotation": 0.0}
    run = subprocess.run([sys.executable, "-m", "fcn_tf.train", str(write_config(tmp_path, config))],
                         capture_output=True, text=True, timeout=300, env=_user_env())
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Best val mean IoU" in log
    assert not ABSL_LINE.search(log), log[-3000:]
    assert not [word for word in NOTICE_WORDS if word in log], log[-3000:]


def test_forward_drops_only_the_notices():
    source = io.BytesIO(
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"I0000 00:00:1796549094.966541   27241 port.cc:153] oneDNN custom operations are on.\n"
        b"W0000 00:00:1796550311.391697   17478 tf_tfl_flatbuffer_helpers.cc:364] Ignored "
        b"output_format.\n"
        b"E0000 00:00:1796549094.966541   27241 some_op.cc:12] a real error\n"
        b"W1206 09:32:19.123456   17478 allocator.cc:1] Allocation exceeds 10% of memory\n"
        b"Traceback (most recent call last): I0000 in the middle is kept\n")
    sink = io.BytesIO()
    logs._forward(logs.START_UP_NOTICES + logs.CONVERTER_NOTICES, source, sink)
    assert sink.getvalue().decode().splitlines() == [
        "E0000 00:00:1796549094.966541   27241 some_op.cc:12] a real error",
        "W1206 09:32:19.123456   17478 allocator.cc:1] Allocation exceeds 10% of memory",
        "Traceback (most recent call last): I0000 in the middle is kept",
    ]


def test_notices_dropped_filters_fd_2_and_restores_it(capfd):
    with logs.notices_dropped(logs.START_UP_NOTICES):
        os.write(2, b"I0000 00:00:17.5   1 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:17.6   1 util.cc:9] kept\n")
    os.write(2, b"I0000 00:00:17.7   1 after.cc:1] after the block, not filtered\n")
    err = capfd.readouterr().err
    assert err.splitlines() == ["E0000 00:00:17.6   1 util.cc:9] kept",
                                "I0000 00:00:17.7   1 after.cc:1] after the block, not filtered"]


def test_a_crash_inside_the_filter_still_shows_its_last_words():
    code = textwrap.dedent("""
        import os
        from fcn_tf.utils import logs
        with logs.notices_dropped(logs.START_UP_NOTICES):
            os.write(2, b"I0000 00:00:17.5   1 port.cc:153] a notice\\n")
            os.write(2, b"F0000 00:00:17.6   1 cpu_check.cc:9] the CPU lacks AVX\\n")
            os.abort()
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=_user_env())
    assert run.returncode != 0
    assert "the CPU lacks AVX" in run.stderr and "a notice" not in run.stderr


def test_quiet_tensorflow_sets_level_1_unless_the_user_chose_one(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # as before it loads
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # the hook leaves with the test

    def hooks():
        return sum(isinstance(finder, logs._QuietImport) for finder in sys.meta_path)

    monkeypatch.setenv(logs.LEVEL_VARIABLE, "0")  # everything shown: nothing filtered
    logs.quiet_tensorflow()
    assert os.environ[logs.LEVEL_VARIABLE] == "0" and hooks() == 0
    monkeypatch.setenv(logs.LEVEL_VARIABLE, "3")
    logs.quiet_tensorflow()
    assert os.environ[logs.LEVEL_VARIABLE] == "3" and hooks() == 1
    monkeypatch.delenv(logs.LEVEL_VARIABLE)
    logs.quiet_tensorflow()
    assert os.environ[logs.LEVEL_VARIABLE] == logs.DEFAULT_LEVEL and hooks() == 1


def test_log_to_stderr_leaves_the_root_logger_alone():
    # A library logger with its own handler that passes records on to the root
    # (TensorFlow's): a root handler would print each of its records twice.
    root = logging.getLogger()
    before = list(root.handlers)
    logs.log_to_stderr()
    logs.log_to_stderr()
    package = logging.getLogger("fcn_tf")
    try:
        assert root.handlers == before
        assert sum(getattr(h, "fcn_tf_stderr", False) for h in package.handlers) == 1
        assert package.level == logging.INFO
    finally:
        for handler in [h for h in package.handlers if getattr(h, "fcn_tf_stderr", False)]:
            package.removeHandler(handler)
        package.setLevel(logging.NOTSET)
