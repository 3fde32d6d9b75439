"""``"imagenet"`` as a weights source: the ``keras.applications`` files, fetched once.

:func:`imagenet_path` finds the ImageNet file of a model's backbone (the
table is :data:`fcn_tf.backbones.IMAGENET_FILES`, one entry per backbone):

1. ``$FCN_TF_WEIGHTS_DIR/<file name>``, for machines without internet (a
   variable naming a folder that does not exist is an error, not skipped, and
   so is a file there whose hash does not match);
2. the Keras cache, ``$KERAS_HOME/models/<file name>`` (``~/.keras/models``
   when ``KERAS_HOME`` is unset), where ``keras.applications`` keeps the same
   files; a cached file whose hash does not match is not deleted but kept
   aside as ``<file name>.bad-hash`` (said on standard error), then fetched
   again;
3. else it downloads the file into the cache, with a progress bar on
   standard error, to a temporary name that is renamed into place only once
   the whole file has arrived and its hash matched: a partial or wrong
   download never stays in the cache. A cache folder that cannot be written
   is named, with the fix.

Offline (no route, DNS failure, refused connection, time-out) it fails within
``timeout`` seconds with a :class:`~fcn_tf.weights.WeightsError` that names
the file, its URL and where to put it by hand.

Hashes: Keras publishes an MD5 for the VGG16, VGG19 and Xception files and no
hash for MobileNetV2's (``keras/src/applications/*.py``, Keras 3.15). No
SHA-256 of these files is published by their source and none could be
computed here without the files, so the table keeps Keras' own MD5; a file
without a hash is checked by loading only (every layer's shape).
"""

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request

from fcn_tf.backbones import IMAGENET, IMAGENET_FILES, ImagenetFile, told_by_layers
from fcn_tf.weights.errors import WeightsError

# Where keras.applications downloads from. Tests point this at a server on 127.0.0.1.
URL_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHTS_DIR_VARIABLE = "FCN_TF_WEIGHTS_DIR"
TIMEOUT_SECONDS = 10.0
CHUNK = 1 << 20



def cache_dir():
    """The Keras cache of downloaded models: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def backbone_of(model):
    """The backbone ``model`` was built on, told from its layer names, or ``None``."""
    return told_by_layers((layer.name for layer in model.layers),
                          {name: weights.model_layers for name, weights in IMAGENET.items()})


def imagenet_file(model, backbone=None):
    """The :class:`ImagenetFile` for ``model``: with the classifier where it has ``fc6``."""
    backbone = backbone or backbone_of(model)
    if backbone not in IMAGENET_FILES:
        known = ", ".join(sorted(IMAGENET_FILES))
        raise WeightsError(
            f"weights='imagenet': no ImageNet weights for model {model.name!r} "
            f"(backbone {backbone or 'not recognised'}). ImageNet weights exist for the "
            f"backbones {known}; train this model from scratch (weights null) or pass a file."
        )
    files = IMAGENET_FILES[backbone]
    names = {layer.name for layer in model.layers}
    return files["classifier"] if "fc6" in names and "classifier" in files else files["encoder"]


def url_of(entry):
    return URL_BASE + entry.url_path


def imagenet_path(model, backbone=None, *, timeout=TIMEOUT_SECONDS, progress=True):
    """The local path of ``model``'s ImageNet weights, downloading them on first use.

    Args:
        model: a model of this package (its backbone is told from its layers).
        backbone: the backbone's name, when the layers do not tell it.
        timeout: seconds to wait for the server to answer or send more data.
        progress: show a progress bar on standard error while downloading.

    Raises:
        WeightsError: a model without ImageNet weights, ``$FCN_TF_WEIGHTS_DIR``
        naming a missing folder, a cache folder that cannot be written, no
        connection, an interrupted transfer, or a downloaded file whose hash
        does not match (the download is deleted; a cached file with a wrong
        hash is kept aside as ``.bad-hash``).
    """
    entry = imagenet_file(model, backbone)
    local = os.environ.get(WEIGHTS_DIR_VARIABLE)
    if local:
        if not os.path.isdir(local):
            raise WeightsError(
                f"${WEIGHTS_DIR_VARIABLE} is {local!r}, which is not a folder. Fix the variable, "
                f"create the folder and put {entry.name} in it, or unset it to use the Keras "
                f"cache ({cache_dir()}).")
        path = os.path.join(local, entry.name)
        if os.path.isfile(path):
            if not _hash_matches(path, entry):
                raise WeightsError(
                    f"{path} (in ${WEIGHTS_DIR_VARIABLE}) has the wrong {entry.hash_algorithm} "
                    f"(expected {entry.hash}): a corrupt copy or another file. Replace it with "
                    f"{url_of(entry)}, or remove it to use the Keras cache.")
            return path
    path = os.path.join(cache_dir(), entry.name)
    if os.path.isfile(path):
        if _hash_matches(path, entry):
            return path
        _keep_aside(path, entry)
    _download(entry, path, timeout, progress)
    return path


def _keep_aside(path, entry):
    """Rename a cached file with a wrong hash to ``<path>.bad-hash``; say so on standard error."""
    aside = path + ".bad-hash"
    try:
        os.replace(path, aside)
    except OSError as error:
        raise WeightsError(
            f"{path}: the cached file's {entry.hash_algorithm} is not {entry.hash} (corrupt or "
            f"another file), and it cannot be moved aside to {aside} ({error}). Delete it "
            "yourself to download it again.") from error
    print(f"warning: {path} had the wrong {entry.hash_algorithm} (expected {entry.hash}): "
          f"kept as {aside}, downloading it again.", file=sys.stderr, flush=True)


def _hash_matches(path, entry):
    if entry.hash is None:
        return True
    digest = hashlib.new(entry.hash_algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest() == entry.hash


def _by_hand(entry, path):
    return (f"Download {url_of(entry)} on a machine with internet and put it at {path} "
            f"(the Keras cache), or into a folder named by ${WEIGHTS_DIR_VARIABLE}, "
            "or give model.weights the file's path.")


def _writable_folder(entry, path):
    """Make the cache folder and a temporary file in it; a :class:`WeightsError` naming the fix."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=f".{entry.name}.", suffix=".part", dir=folder)
    except OSError as error:
        raise WeightsError(
            f"Cannot write into the Keras cache folder {folder} to download {entry.name} "
            f"({error.strerror or error}). Set KERAS_HOME to a writable folder, make {folder} "
            f"writable, or put the file in a folder named by ${WEIGHTS_DIR_VARIABLE}. "
            f"{_by_hand(entry, path)}") from error
    return handle, probe


def _download(entry, path, timeout, progress):
    url = url_of(entry)
    handle, partial = _writable_folder(entry, path)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - fixed https URL
    except (urllib.error.URLError, OSError) as error:
        os.close(handle)
        os.remove(partial)
        reason = getattr(error, "reason", error)
        raise WeightsError(f"Could not download the ImageNet weights {entry.name} from {url}: "
                     f"{reason}. {_by_hand(entry, path)}") from error
    try:
        with response, os.fdopen(handle, "wb") as out:
            expected = int(response.headers.get("Content-Length") or 0)
            received = 0
            bar = _Progress(entry.name, expected, progress)
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(received)
            bar.close()
        if expected and received != expected:
            raise WeightsError(f"The download of {entry.name} from {url} stopped after {received} of "
                         f"{expected} bytes; nothing was kept. Try again, or: "
                         f"{_by_hand(entry, path)}")
        if not _hash_matches(partial, entry):
            raise WeightsError(f"{entry.name} downloaded from {url} has the wrong "
                         f"{entry.hash_algorithm} (expected {entry.hash}); the file was deleted. "
                         f"{_by_hand(entry, path)}")
        os.replace(partial, path)
    except (OSError, urllib.error.URLError) as error:
        raise WeightsError(f"The download of {entry.name} from {url} failed: {error}. "
                     f"{_by_hand(entry, path)}") from error
    finally:
        if os.path.exists(partial):
            os.remove(partial)


class _Progress:
    """A one-line bar on a terminal; a line per 10% when standard error is a file."""

    def __init__(self, name, total, enabled):
        self.name, self.total, self.enabled = name, total, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.reported = -1
        if enabled:
            size = f" ({total / 2**20:.0f} MiB)" if total else ""
            print(f"Downloading {name}{size} into {cache_dir()}", file=sys.stderr, flush=True)

    def update(self, received):
        if not self.enabled or not self.total:
            return
        percent = int(100 * received / self.total)
        if self.tty:
            filled = percent // 4
            print(f"\r  [{'#' * filled}{'.' * (25 - filled)}] {percent:3d}%", end="",
                  file=sys.stderr, flush=True)
        elif percent // 10 > self.reported:
            self.reported = percent // 10
            print(f"  {percent}% of {self.name}", file=sys.stderr, flush=True)

    def close(self):
        if self.enabled and self.tty:
            print(file=sys.stderr, flush=True)


__all__ = ["ImagenetFile", "URL_BASE", "backbone_of", "cache_dir", "imagenet_file",
           "imagenet_path"]
