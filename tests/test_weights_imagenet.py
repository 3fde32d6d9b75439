"""``"imagenet"`` weights: the file table, the Keras cache, and downloads from a server on 127.0.0.1.

The files served are small synthetic ones with the real names and the
``keras.applications`` h5 layout (VGG16 at 1/16 width); the table's hashes are
swapped for theirs. Nothing leaves this machine.
"""

import dataclasses
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fcn_tf
from fcn_tf.backbones import BACKBONE_TABLE, IMAGENET_FILES
from fcn_tf.weights import WeightsError, imagenet
from train_fixtures import tiny_config, write_config
from weights_fixtures import vgg_legacy_layers, write_legacy_keras_h5

WIDTH = 1 / 16
FULL = IMAGENET_FILES["vgg16"]["classifier"]


class _Server:
    """Serves ``files`` ({url path: bytes}); ``truncate`` sends half a file and closes."""

    def __init__(self, files):
        self.files, self.requests, self.truncate = files, [], False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.requests.append(self.path)
                body = outer.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if outer.truncate else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _md5(data):
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / FULL.name
    write_legacy_keras_h5(path, vgg_legacy_layers("vgg16", WIDTH, np.random.default_rng(7),
                                                  include_top=True))
    return path.read_bytes()


@pytest.fixture
def served(monkeypatch, tmp_path, vgg_file):
    """A server with the synthetic VGG16 file, the table pointing at it, KERAS_HOME in tmp."""
    server = _Server({FULL.url_path: vgg_file})
    monkeypatch.setattr(imagenet, "URL_BASE", server.url)
    monkeypatch.setitem(IMAGENET_FILES["vgg16"], "classifier",
                        dataclasses.replace(FULL, hash=_md5(vgg_file)))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("FCN_TF_WEIGHTS_DIR", raising=False)
    yield server
    server.close()


def _fcn8s():
    return fcn_tf.build_model("fcn8s", 3, backbone="vgg16", width_multiplier=WIDTH)


def _cached(tmp_path):
    return tmp_path / "keras" / "models" / FULL.name


def test_every_backbone_with_pretrained_weights_has_a_file_row():
    assert set(IMAGENET_FILES) == {"vgg16", "vgg19", "mobilenet_v2", "xception"}
    for backbone, files in IMAGENET_FILES.items():
        assert files["encoder"].name.endswith(".h5") and "notop" in files["encoder"].name.replace(
            "no_top", "notop")
        for entry in files.values():
            assert entry.url_path.endswith("/" + entry.name)
            assert (entry.hash is None) == (entry.hash_algorithm is None)
            assert entry.source.startswith("keras/src/applications/")
        assert BACKBONE_TABLE[backbone].preprocessing in ("vgg", "inception")
    assert IMAGENET_FILES["mobilenet_v2"]["encoder"].hash is None  # Keras publishes none


@pytest.mark.parametrize("name, backbone, options, expected", [
    ("fcn8s", "vgg16", {"width_multiplier": WIDTH}, "vgg16_weights_tf_dim_ordering_tf_kernels.h5"),
    ("fcn32s", "vgg19", {"width_multiplier": WIDTH}, "vgg19_weights_tf_dim_ordering_tf_kernels.h5"),
    ("fcn_deconv", "vgg16", {"width_multiplier": WIDTH},
     "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("deeplabv3plus", "mobilenet_v2", {},
     "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
])
def test_the_file_follows_the_backbone_and_whether_the_model_has_fc6(name, backbone, options,
                                                                      expected):
    model = fcn_tf.build_model(name, 3, backbone=backbone, **options)
    assert imagenet.imagenet_file(model).name == expected


def test_a_model_without_imagenet_weights_is_told_so():
    model = fcn_tf.build_model("unet", 2, base_filters=4, depth=2)
    with pytest.raises(WeightsError, match="no ImageNet weights .*mobilenet_v2, vgg16"):
        fcn_tf.load_weights(model, "imagenet")


def test_first_download_fills_the_cache_and_loads_the_files_weights(served, tmp_path, vgg_file,
                                                                    capfd):
    model = _fcn8s()
    result = fcn_tf.load_weights(model, "imagenet")
    assert served.requests == ["/" + FULL.url_path]
    assert _cached(tmp_path).read_bytes() == vgg_file
    assert result.path == str(_cached(tmp_path)) and "fc6" in result.loaded
    reference = _fcn8s()
    fcn_tf.load_weights(reference, str(_cached(tmp_path)))
    for a, b in zip(model.get_layer("fc6").get_weights(), reference.get_layer("fc6").get_weights()):
        np.testing.assert_array_equal(a, b)
    err = capfd.readouterr().err
    assert f"Downloading {FULL.name}" in err and "100% of" in err and "\r" not in err
    assert os.listdir(_cached(tmp_path).parent) == [FULL.name]  # no partial file left


def test_cache_hit_does_not_contact_the_server(served, tmp_path):
    fcn_tf.load_weights(_fcn8s(), "imagenet")
    fcn_tf.load_weights(_fcn8s(), "imagenet")
    assert len(served.requests) == 1


def test_prefilled_cache_and_weights_dir_need_no_server(served, tmp_path, vgg_file, monkeypatch):
    served.close()  # nothing may be asked of it
    _cached(tmp_path).parent.mkdir(parents=True)
    _cached(tmp_path).write_bytes(vgg_file)
    assert imagenet.imagenet_path(_fcn8s()) == str(_cached(tmp_path))
    folder = tmp_path / "airgapped"
    folder.mkdir()
    (folder / FULL.name).write_bytes(vgg_file)
    monkeypatch.setenv("FCN_TF_WEIGHTS_DIR", str(folder))
    assert imagenet.imagenet_path(_fcn8s()) == str(folder / FULL.name)
    assert served.requests == []


def test_wrong_hash_deletes_the_file_and_names_it(served, tmp_path, monkeypatch):
    monkeypatch.setitem(IMAGENET_FILES["vgg16"], "classifier",
                        dataclasses.replace(FULL, hash="0" * 32))
    model = _fcn8s()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsError, match=f"{FULL.name} downloaded from .* wrong md5 .*deleted"):
        fcn_tf.load_weights(model, "imagenet")
    assert not _cached(tmp_path).parent.exists() or os.listdir(_cached(tmp_path).parent) == []
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_corrupted_cache_entry_is_kept_aside_said_and_downloaded_again(served, tmp_path,
                                                                         vgg_file, capfd):
    _cached(tmp_path).parent.mkdir(parents=True)
    _cached(tmp_path).write_bytes(b"not the file")
    fcn_tf.load_weights(_fcn8s(), "imagenet")
    assert _cached(tmp_path).read_bytes() == vgg_file and len(served.requests) == 1
    aside = _cached(tmp_path).parent / (FULL.name + ".bad-hash")
    assert aside.read_bytes() == b"not the file"
    assert f"had the wrong md5 (expected {_md5(vgg_file)}): kept as {aside}" in capfd.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_names_the_folder_and_the_fix(served, tmp_path):
    folder = _cached(tmp_path).parent
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    try:
        with pytest.raises(WeightsError, match=f"Cannot write into the Keras cache folder {folder}"
                                               ".*Set KERAS_HOME to a writable folder"):
            fcn_tf.load_weights(_fcn8s(), "imagenet")
    finally:
        folder.chmod(0o755)
    assert served.requests == []


def test_a_weights_dir_that_does_not_exist_is_an_error(served, tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_TF_WEIGHTS_DIR", str(tmp_path / "typo"))
    with pytest.raises(WeightsError, match=r"\$FCN_TF_WEIGHTS_DIR is '.*typo', which is not a "
                                           "folder"):
        fcn_tf.load_weights(_fcn8s(), "imagenet")
    assert served.requests == []


def test_truncated_transfer_keeps_nothing(served, tmp_path):
    served.truncate = True
    with pytest.raises(WeightsError, match=f"download of {FULL.name} .*(stopped after|failed)"):
        fcn_tf.load_weights(_fcn8s(), "imagenet")
    assert not _cached(tmp_path).exists()
    assert os.listdir(_cached(tmp_path).parent) == []


def _refused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on exit: connections are refused


def test_server_down_fails_within_seconds_naming_file_url_and_where_to_put_it(
        served, tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_refused_port()}/"
    monkeypatch.setattr(imagenet, "URL_BASE", url)
    started = time.monotonic()
    with pytest.raises(WeightsError) as error:
        fcn_tf.load_weights(_fcn8s(), "imagenet")
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert url + FULL.url_path in message and str(_cached(tmp_path)) in message
    assert "FCN_TF_WEIGHTS_DIR" in message and "model.weights" in message


def test_config_imagenet_offline_fails_before_any_run_folder(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, model={"name": "fcn8s", "backbone": "vgg16",
                                          "weights": "imagenet",
                                          "options": {"width_multiplier": WIDTH}})
    path = write_config(tmp_path, config)
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"),
           "FCN_TF_TEST_IMAGENET_URL_BASE": f"http://127.0.0.1:{_refused_port()}/"}
    env.pop("FCN_TF_WEIGHTS_DIR", None)
    code = ("import os, sys; from fcn_tf.weights import imagenet; "
            "imagenet.URL_BASE = os.environ['FCN_TF_TEST_IMAGENET_URL_BASE']; "
            "from fcn_tf.train import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode != 0
    assert "Could not download the ImageNet weights" in result.stderr
    assert FULL.name in result.stderr
    assert not os.path.exists(tmp_path / "runs")


def test_config_keeps_imagenet_as_a_keyword_and_resolves_paths(tmp_path):
    from fcn_tf.config.run_config import load_config

    config = tiny_config(tmp_path, model={"weights": "imagenet"})
    assert load_config(write_config(tmp_path, config)).model.weights == "imagenet"
    config = tiny_config(tmp_path, model={"weights": "w/file.h5"})
    resolved = load_config(write_config(tmp_path, config)).model.weights
    assert resolved == os.path.join(str(tmp_path), "w", "file.h5")
