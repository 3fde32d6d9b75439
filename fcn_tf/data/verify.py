"""Dataset checks: the verifier's full report and the trainer's cheap check.

:func:`verify` decodes every file once (Pillow, threads) and reports counts
per split, image sizes, per-class pixel frequencies with median-frequency
class weights, and every problem with the offending files: unreadable or
truncated files, image/mask size mismatches, images without masks and masks
without images, label values that are neither a class id nor ignored, empty
splits. :func:`check_dataset` runs the cheap part (listing, headers, a few
masks) and raises :class:`DatasetError` naming the files.

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
from fcn_tf.data.decode import color_table, labels_from_raw, read_image_array, read_mask_raw
from fcn_tf.data.formats import DatasetError, list_split, listing_problems, split_names


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
    sizes: list  # (height, width) of each readable image
    pixels: PixelStats | None = None


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


def _inspect(pair, config):
    """Decode one pair: (image size, per-class counts, ignored, [(kind, detail, file)])."""
    image_path, mask_path = pair
    issues, size, counts, ignored = [], None, None, 0
    try:
        size = read_image_array(image_path, config.image_channels).shape[:2]
    except Exception as error:  # noqa: BLE001 - any decoder failure is reported
        issues.append(("unreadable", f"cannot decode image: {error}", image_path))
    try:
        raw, mode = read_mask_raw(mask_path, config.mask_encoding)
    except Exception as error:  # noqa: BLE001
        issues.append(("unreadable", f"cannot decode mask: {error}", mask_path))
        return size, counts, ignored, issues
    bad = _label_problem(raw, mode, config)
    if bad:
        issues.append(("bad_labels", bad, mask_path))
    labels = labels_from_raw(raw, config)
    if size is not None and tuple(size) != labels.shape:
        issues.append((
            "size_mismatch",
            f"image {size[0]}x{size[1]} vs mask {labels.shape[0]}x{labels.shape[1]} (HxW)",
            f"{image_path} <-> {mask_path}",
        ))
    hist = np.bincount(labels.ravel(), minlength=256)
    counts = hist[: config.num_classes].astype(np.int64)
    ignored = int(hist[config.ignore_label])
    return size, counts, ignored, issues


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
    ignored, sizes, issues = 0, [], []
    for size, c, ign, found in results:
        issues.extend(found)
        if size is not None:
            sizes.append(tuple(size))
        if c is not None:
            counts += c
            image_pixels += (c > 0) * (c.sum() + ign)
            ignored += ign
    return sizes, PixelStats(counts, image_pixels, ignored), _group(issues, split)


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
        sizes, pixels, found = _scan(config, split, listing.pairs, workers)
        problems.extend(found)
        reports[split] = SplitReport(split, len(listing.pairs), sizes, pixels)
    weights_split = "train" if "train" in reports else next(iter(reports), None)
    weights = None
    if weights_split is not None:
        stats = reports[weights_split].pixels
        weights = median_frequency_weights(stats.counts, stats.image_pixels)
    return VerifyReport(config.format, config.root, list(config.class_names), config.ignore_label,
                        reports, problems, weights, weights_split)


def _header_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size[::-1]


def check_dataset(config, splits=("train", "val"), sample=8):
    """The cheap checks the trainer runs first; raises :class:`DatasetError` naming files.

    Lists every split (unmatched files, empty splits), reads every header
    (unreadable files, image/mask size mismatch) and decodes ``sample`` masks
    per split (label values). Returns ``{split: number of pairs}``.
    """
    problems, counts = [], {}
    for split in splits:
        listing = list_split(config, split)
        problems.extend(_listing_problems(listing))
        counts[split] = len(listing.pairs)
        issues = []
        for image_path, mask_path in listing.pairs:
            try:
                image_hw, mask_hw = _header_size(image_path), _header_size(mask_path)
            except Exception as error:  # noqa: BLE001
                issues.append(("unreadable", f"cannot open: {error}", f"{image_path} / {mask_path}"))
                continue
            if image_hw != mask_hw:
                issues.append(("size_mismatch", f"image {image_hw} vs mask {mask_hw} (HxW)",
                               f"{image_path} <-> {mask_path}"))
        for pair in listing.pairs[:sample]:
            issues.extend(i for i in _inspect(pair, config)[3] if i[0] != "size_mismatch")
        problems.extend(_group(issues, split))
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
