"""Dataset checks: the verifier's full report and the trainer's cheap check.

:func:`verify` decodes every file once (Pillow, threads) and reports counts
per split, image sizes, per-class pixel frequencies with median-frequency
class weights, and every problem with the offending files: unreadable or
truncated files, files over the pixel limit, image/mask size mismatches
(after EXIF orientation), images without masks and masks without images,
label values that are neither a class id nor ignored, masks stored in a
lossy format (JPEG), splits whose masks hold only the ignore label, empty
splits. :func:`check_dataset` runs the cheap part (listing, headers, a few
masks, masks until one holds a class id) and raises :class:`DatasetError`
naming the files; the training pipeline calls :func:`require_labels`.

Median-frequency balancing (Eigen & Fergus, ICCV 2015): ``freq(c)`` is the
pixels of class ``c`` over the pixels of the images where ``c`` appears, and
``weight(c) = median(freq) / freq(c)``.
"""

import argparse
import collections
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fcn_tf.data.config import load_data_config
from fcn_tf.data.decode import (
    MAX_PIXELS_KEY,
    ImageTooLargeError,
    color_table,
    labels_from_raw,
    read_header,
    read_image,
    read_mask_array,
    read_mask_raw,
)
from fcn_tf.data.formats import DatasetError, list_split, listing_problems, split_names

LOSSY_MASK = (
    "mask stored in a lossy format ({format}): compression changes label values near edges, "
    "some into other valid class ids, and no check can tell. Save masks losslessly (PNG); "
    "training refuses lossy masks (train.check_dataset)"
)
HEADER_KINDS = ("size_mismatch", "lossy_mask", "too_large")
EXIF_HINT = (
    "; images and masks are both turned upright by their EXIF orientation before they are "
    "compared (docs/DATA.md): if the mask was drawn on the image as stored, ignoring its EXIF "
    "orientation, turn the mask the same way or save the image upright without the tag"
)


@dataclasses.dataclass
class Problem:
    """One problem: its kind, the split, the files and what is wrong."""

    kind: str
    split: str
    detail: str
    files: list = dataclasses.field(default_factory=list)

    def __str__(self):
        files = "".join(f"\n    {f}" for f in self.files[:20])
        more = f"\n    ... and {len(self.files) - 20} more" if len(self.files) > 20 else ""
        return f"[{self.kind}] {self.split}: {self.detail}{files}{more}"


@dataclasses.dataclass
class PixelStats:
    """Per-class pixel counts of a split."""

    counts: np.ndarray  # int64 [C]: pixels of each class
    image_pixels: np.ndarray  # int64 [C]: pixels of the images where the class appears
    ignored: int = 0

    @property
    def frequencies(self):
        total = self.counts.sum()
        return self.counts / total if total else np.zeros(len(self.counts))


@dataclasses.dataclass
class SplitReport:
    name: str
    count: int
    sizes: list  # (height, width) of each readable image, upright
    pixels: PixelStats | None = None
    turned: tuple = (0, 0)  # (images, masks) turned upright by their EXIF orientation


@dataclasses.dataclass
class VerifyReport:
    """Everything :func:`verify` found; ``ok`` is False when there are problems."""

    format: str
    root: str
    class_names: list
    ignore_label: int
    splits: dict
    problems: list
    weights: np.ndarray | None = None
    weights_split: str | None = None

    @property
    def ok(self):
        return not self.problems


def median_frequency_weights(counts, image_pixels=None):
    """Median-frequency class weights; classes with no pixels get weight 0."""
    counts = np.asarray(counts, np.float64)
    denom = counts.sum() if image_pixels is None else np.asarray(image_pixels, np.float64)
    present = counts > 0
    freq = np.divide(counts, denom, out=np.zeros_like(counts), where=present)
    if not present.any():
        return np.zeros_like(counts)
    median = np.median(freq[present])
    return np.divide(median, freq, out=np.zeros_like(counts), where=present)


def _label_problem(raw, mode, config):
    """Description of raw mask values that are not allowed, or None."""
    encoding = config.mask_encoding
    if encoding == "rgb":
        keys = set(map(tuple, np.unique(raw.reshape(-1, 3), axis=0).tolist()))
        unknown = sorted(keys - {c for c, _ in color_table(config)})
        return f"colours not in the colour table: {unknown[:8]}" if unknown else None
    if encoding == "ids" and mode == "P":
        return "palette PNG read with mask_encoding 'ids'; set \"mask_encoding\": \"palette\""
    if encoding == "palette" and mode not in ("P", "L"):
        return f"mode {mode} mask with mask_encoding 'palette' (expected a palette or grayscale PNG)"
    values = np.unique(raw)
    if encoding == "binary":
        allowed = {0, 255}
    else:
        allowed = set(range(config.num_classes)) | {config.ignore_label} | set(config.ignore_values)
    bad = [int(v) for v in values if int(v) not in allowed]
    if bad:
        hint = ""
        if encoding == "ids" and mode in ("RGB", "RGBA"):
            hint = (f"; the mask is a {mode} image: if its colours mean classes, set "
                    "\"mask_encoding\": \"rgb\" (with color_map or colors)")
        return (f"label values {bad[:16]} are neither class ids 0..{config.num_classes - 1} "
                f"nor ignored{hint}")
    return None


def size_mismatch(image, mask):
    """Detail of a size mismatch between two :class:`~fcn_tf.data.decode.ImageHeader`."""
    detail = f"image {image.describe()} vs mask {mask.describe()} (HxW)"
    if image.orientation != 1 or mask.orientation != 1:
        detail += EXIF_HINT
    return detail


def header_issues(pair, config):
    """``(headers, issues)`` of a pair from its headers alone (no pixel decoded).

    ``headers`` is ``(image, mask)`` :class:`~fcn_tf.data.decode.ImageHeader`
    or ``None`` when a header cannot be read; issues are unreadable files,
    files over ``config.max_image_pixels``, a size mismatch (after EXIF
    orientation) and lossy masks, as ``(kind, detail, file)``.
    """
    headers, issues = [], []
    for path, what in zip(pair, ("image", "mask")):
        try:
            headers.append(read_header(path, config.max_image_pixels, MAX_PIXELS_KEY))
        except ImageTooLargeError as error:
            issues.append(("too_large", f"{what} over the pixel limit: {error.detail}", path))
        except OSError as error:
            issues.append(("unreadable", f"cannot open {what}: {error}", path))
    if len(headers) < 2:
        return None, issues
    image, mask = headers
    if image.size != mask.size:
        issues.append(("size_mismatch", size_mismatch(image, mask), f"{pair[0]} <-> {pair[1]}"))
    if mask.lossy:
        issues.append(("lossy_mask", LOSSY_MASK.format(format=mask.format), pair[1]))
    return (image, mask), issues


@dataclasses.dataclass
class _Inspected:
    """What decoding one pair found."""

    size: tuple | None = None  # upright (height, width) of the image
    counts: np.ndarray | None = None
    ignored: int = 0
    issues: list = dataclasses.field(default_factory=list)
    turned: tuple = (0, 0)


def _inspect(pair, config):
    """Decode one pair: sizes, per-class counts, ignored pixels and ``[(kind, detail, file)]``."""
    image_path, mask_path = pair
    found = _Inspected()
    image_header = None
    try:
        pixels, image_header = read_image(image_path, config.image_channels,
                                          config.max_image_pixels, MAX_PIXELS_KEY)
        found.size = pixels.shape[:2]
    except ImageTooLargeError as error:
        found.issues.append(("too_large", f"image over the pixel limit: {error.detail}",
                             image_path))
    except Exception as error:  # noqa: BLE001 - any decoder failure is reported
        found.issues.append(("unreadable", f"cannot decode image: {error}", image_path))
    try:
        raw, mode, mask_header = read_mask_raw(mask_path, config.mask_encoding,
                                               config.max_image_pixels, MAX_PIXELS_KEY)
    except ImageTooLargeError as error:
        found.issues.append(("too_large", f"mask over the pixel limit: {error.detail}", mask_path))
        return found
    except Exception as error:  # noqa: BLE001
        found.issues.append(("unreadable", f"cannot decode mask: {error}", mask_path))
        return found
    found.turned = (int(bool(image_header and image_header.orientation != 1)),
                    int(mask_header.orientation != 1))
    if mask_header.lossy:
        found.issues.append(("lossy_mask", LOSSY_MASK.format(format=mask_header.format),
                             mask_path))
    bad = _label_problem(raw, mode, config)
    if bad:
        found.issues.append(("bad_labels", bad, mask_path))
    labels = labels_from_raw(raw, config)
    if image_header is not None and image_header.size != labels.shape:
        found.issues.append(("size_mismatch", size_mismatch(image_header, mask_header),
                             f"{image_path} <-> {mask_path}"))
    hist = np.bincount(labels.ravel(), minlength=256)
    found.counts = hist[: config.num_classes].astype(np.int64)
    found.ignored = int(hist[config.ignore_label])
    return found


def _no_labels(config, split, masks, read):
    return Problem(
        "no_labels", split,
        f"all {read} mask(s) read hold only the ignore label {config.ignore_label}: nothing "
        "to train on or to score (training would run with loss 0 and mean IoU 0). Check "
        f"mask_encoding ({config.mask_encoding!r}), num_classes ({config.num_classes}), "
        "ignore_values and ignore_label against the masks; training refuses this split",
        list(masks))


def unlabelled_split(config, split, pairs):
    """A ``no_labels`` :class:`Problem` when no mask of ``pairs`` holds a class id, else ``None``.

    Masks are decoded in order until one holds a class id: one mask for a
    labelled split. Unreadable masks are skipped (other checks report them).
    """
    read = 0
    for _, mask_path in pairs:
        try:
            labels = read_mask_array(mask_path, config)
        except (OSError, ValueError):
            continue
        read += 1
        if (labels != config.ignore_label).any():
            return None
    return _no_labels(config, split, [m for _, m in pairs], read) if read else None


def require_labels(config, split, pairs):
    """Raise :class:`DatasetError` when every readable mask of ``pairs`` is all ignore.

    What the training and evaluation pipelines call before their first step
    (:func:`unlabelled_split`).
    """
    problem = unlabelled_split(config, split, pairs)
    if problem is not None:
        raise DatasetError(f"Dataset check failed:\n{problem}\nRun `python -m fcn_tf.data "
                           "verify CONFIG` for a full report.")


def _group(issues, split):
    """One Problem per (kind, detail) with all its files."""
    grouped = collections.OrderedDict()
    for kind, detail, path in issues:
        grouped.setdefault((kind, detail), []).append(path)
    return [Problem(kind, split, detail, files) for (kind, detail), files in grouped.items()]


def _listing_problems(listing):
    return [Problem(kind, listing.split, detail, list(files))
            for kind, detail, files in listing_problems(listing)]


def _scan(config, split, pairs, workers):
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        results = list(pool.map(lambda p: _inspect(p, config), pairs))
    n = config.num_classes
    counts = np.zeros(n, np.int64)
    image_pixels = np.zeros(n, np.int64)
    ignored, sizes, issues, read = 0, [], [], 0
    turned = np.zeros(2, np.int64)
    for found in results:
        issues.extend(found.issues)
        turned += found.turned
        if found.size is not None:
            sizes.append(tuple(found.size))
        if found.counts is not None:
            read += 1
            counts += found.counts
            image_pixels += (found.counts > 0) * (found.counts.sum() + found.ignored)
            ignored += found.ignored
    problems = _group(issues, split)
    if read and not counts.sum():
        problems.append(_no_labels(config, split, [m for _, m in pairs], read))
    return sizes, PixelStats(counts, image_pixels, ignored), problems, tuple(int(t) for t in turned)


def class_pixel_frequencies(config, split="train", workers=None):
    """:class:`PixelStats` of ``split`` (``.frequencies`` sums to 1 over classes)."""
    pairs = list_split(config, split).pairs
    return _scan(config, split, pairs, workers)[1]


def verify(config, splits=None, workers=None):
    """Full check of the dataset; returns a :class:`VerifyReport` (never raises on bad files)."""
    problems, reports = [], {}
    try:
        names = list(splits) if splits else split_names(config)
    except DatasetError as error:
        names = []
        problems.append(Problem("missing", "-", str(error)))
    if not names and not problems:
        problems.append(Problem("empty_split", "-", "no split found; set data.splits"))
    for split in names:
        try:
            listing = list_split(config, split)
        except DatasetError as error:
            problems.append(Problem("missing", split, str(error)))
            continue
        problems.extend(_listing_problems(listing))
        sizes, pixels, found, turned = _scan(config, split, listing.pairs, workers)
        problems.extend(found)
        reports[split] = SplitReport(split, len(listing.pairs), sizes, pixels, turned)
    weights_split = "train" if "train" in reports else next(iter(reports), None)
    weights = None
    if weights_split is not None:
        stats = reports[weights_split].pixels
        weights = median_frequency_weights(stats.counts, stats.image_pixels)
    return VerifyReport(config.format, config.root, list(config.class_names), config.ignore_label,
                        reports, problems, weights, weights_split)


def check_dataset(config, splits=("train", "val"), sample=8):
    """The cheap checks the trainer runs first; raises :class:`DatasetError` naming files.

    Lists every split (unmatched files, empty splits), reads every header
    (unreadable files, files over ``max_image_pixels``, image/mask size
    mismatch after EXIF orientation, masks in a lossy format), decodes
    ``sample`` masks per split (label values) and then masks until one holds
    a class id (a split of ignore-only masks). Returns ``{split: number of pairs}``.
    """
    problems, counts = [], {}
    for split in splits:
        listing = list_split(config, split)
        problems.extend(_listing_problems(listing))
        counts[split] = len(listing.pairs)
        issues = []
        for pair in listing.pairs:
            issues.extend(header_issues(pair, config)[1])
        for pair in listing.pairs[:sample]:  # what headers already told is not repeated
            issues.extend(i for i in _inspect(pair, config).issues if i[0] not in HEADER_KINDS)
        problems.extend(_group(issues, split))
        unlabelled = unlabelled_split(config, split, listing.pairs)
        if unlabelled is not None:
            problems.append(unlabelled)
    if problems:
        raise DatasetError(
            "Dataset check failed:\n" + "\n".join(str(p) for p in problems)
            + "\nRun `python -m fcn_tf.data verify CONFIG` for a full report."
        )
    return counts


def _size_summary(sizes):
    if not sizes:
        return "no readable images"
    hw = np.array(sizes)
    common = collections.Counter(sizes).most_common(3)
    shown = ", ".join(f"{h}x{w} ({n})" for (h, w), n in common)
    return (f"HxW min {hw[:, 0].min()}x{hw[:, 1].min()}, max {hw[:, 0].max()}x{hw[:, 1].max()}, "
            f"mean {hw[:, 0].mean():.0f}x{hw[:, 1].mean():.0f}; most common: {shown}")


def format_report(report):
    """The report as text (what ``python -m fcn_tf.data verify`` prints)."""
    lines = [f"Dataset: format {report.format!r}, root {report.root}",
             f"Classes: {len(report.class_names)}, ignore label {report.ignore_label}", "", "Splits:"]
    for split in report.splits.values():
        lines.append(f"  {split.name:<8} {split.count:>6} pairs; {_size_summary(split.sizes)}")
        if any(split.turned):
            lines.append(f"  {'':<8} EXIF orientation: {split.turned[0]} image(s) and "
                         f"{split.turned[1]} mask(s) turned upright, as viewers show them and as "
                         "training, evaluation and predict read them; masks must be drawn on "
                         "the upright image (check one pair by eye)")
    if report.splits:
        names = list(report.splits)
        lines += ["", "Per-class pixel frequency (%)" + "".join(f"{n:>9}" for n in names)
                  + (f"   weight ({report.weights_split}, median freq.)" if report.weights is not None else "")]
        for c, name in enumerate(report.class_names):
            freqs = "".join(f"{100 * report.splits[n].pixels.frequencies[c]:9.2f}" for n in names)
            weight = f"{report.weights[c]:12.3f}" if report.weights is not None else ""
            lines.append(f"  {c:>3} {name:<24}{freqs}{weight}")
        ignored = []
        for n in names:
            p = report.splits[n].pixels
            total = p.counts.sum() + p.ignored
            ignored.append(100 * p.ignored / total if total else 0.0)
        lines.append("  ignored (% of all pixels)   " + "".join(f"{v:9.2f}" for v in ignored))
    lines.append("")
    if report.ok:
        lines.append("No problems found.")
    else:
        lines.append(f"{len(report.problems)} problem(s):")
        lines += [f"  {p}" for p in report.problems]
    return "\n".join(lines)


def main(argv=None):
    """``python -m fcn_tf.data verify CONFIG [--split NAME ...]``: exit 1 on problems."""
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.data verify",
                                     description="Check a dataset and print its report.")
    parser.add_argument("config", help="config file; only its \"data\" section is read")
    parser.add_argument("--split", action="append", help="split to check (default: all)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads")
    args = parser.parse_args(argv)
    report = verify(load_data_config(args.config), args.split, args.workers)
    print(format_report(report))
    return 0 if report.ok else 1
