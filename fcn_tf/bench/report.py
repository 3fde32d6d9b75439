"""The printed table of a benchmark run, and where its JSON goes."""

import datetime
import os


def _fraction(entry, matmul):
    peak = matmul["bfloat16" if "bfloat16" in entry["precision"] else "float32"]["gflops"]
    return entry["gflops"] / peak


def format_report(report):
    matmul = report["machine"]["matmul"]
    lines = [f"Machine: {report['cores']} cores, {report['threads'] or 'all'} threads; "
             f"matmul float32 {matmul['float32']['gflops']:.0f} GFLOP/s, bfloat16 "
             f"{matmul['bfloat16']['gflops']:.0f} GFLOP/s (best of sizes "
             f"{', '.join(map(str, matmul['float32']['by_size']))})", ""]
    header = (f"{'model':<28}{'kind':<11}{'precision':<15}{'jit':<5}{'size':>5}{'batch':>6}"
              f"{'images/s':>10}{'spread':>16}{'GFLOP/s':>9}{'% peak':>8}")
    lines += [header, "-" * len(header)]
    for model in report["models"]:
        if "error" in model:
            lines.append(f"{model.get('model', '?'):<28}failed: {model['error']}")
        for e in model.get("results", []):
            if "skipped" in e:
                lines.append(f"{model['model']:<28}{e['kind']:<11}{e['precision']:<15}"
                             f"{e['jit']:<5}{e['size']:>5}{e['batch']:>6}  skipped: {e['skipped']}")
                continue
            if "error" in e:
                lines.append(f"{model['model']:<28}{e['kind']:<11}{e['precision']:<15}"
                             f"{e['jit']:<5}{e['size']:>5}{e['batch']:>6}  failed: "
                             f"{e['error'][:60]}")
                continue
            spread = f"{e['batch'] / e['max_s']:.2f}-{e['batch'] / e['min_s']:.2f}"
            lines.append(f"{model['model']:<28}{e['kind']:<11}{e['precision']:<15}{e['jit']:<5}"
                         f"{e['size']:>5}{e['batch']:>6}{e['images_per_s']:>10.2f}{spread:>16}"
                         f"{e['gflops']:>9.1f}{100 * _fraction(e, matmul):>7.0f}%")
        if "flops_per_image" not in model:
            continue
        flops = ", ".join(f"{s}: {f / 1e9:.1f}" for s, f in model["flops_per_image"].items())
        memory = ", ".join(f"{k} {v:.0f}" for k, v in model.get("peak_memory_mib", {}).items())
        lines.append(f"{'':<28}GFLOP/image {flops}; {model.get('parameters', 0):,} parameters; "
                     f"peak MiB {memory}")
    lines.append("% peak: achieved GFLOP/s over the matmul rate of the same precision "
                 "(train steps count 3 forward passes).")
    if report.get("pipeline"):
        lines.append("")
        for size, rates in report["pipeline"].items():
            lines.append(f"Input pipeline {size}x{size} (built-in data, full augmentation): "
                         + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()) + " images/s")
    if report.get("serving"):
        serving = report["serving"]
        lines += ["", f"Serving {serving['model']} at new input sizes (SavedModel, batch 1):"]
        for i, size in enumerate(serving["sizes"]):
            off, on = serving["by_jit"]["off"][i], serving["by_jit"]["on"][i]
            even = serving["break_even_calls"][i]
            lines.append(f"  {size[0]}x{size[1]}: first call {off['first_call_s']:.2f} s / XLA "
                         f"{on['first_call_s']:.2f} s; steady {off['median_s'] * 1e3:.1f} ms / "
                         f"XLA {on['median_s'] * 1e3:.1f} ms; XLA pays back after "
                         + (f"{even:.0f} calls" if even is not None else "never"))
    if report.get("agreement"):
        a = report["agreement"]
        lines += ["", f"bfloat16 vs float32 class ids on {a['run']} ({a['split']}): "
                      f"{100 * a['changed_fraction']:.3f}% of {a['pixels']} pixels changed, "
                      f"max |logit difference| {a['max_abs_logit_difference']:.3g}"]
    return "\n".join(lines)


def output_path(out):
    """``out`` if it does not exist; else ``out`` with a time stamp, never overwriting."""
    if not os.path.exists(out):
        return out
    stem, ext = os.path.splitext(out)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = f"{stem}-{stamp}{ext}", 2
    while os.path.exists(candidate):
        candidate, n = f"{stem}-{stamp}-{n}{ext}", n + 1
    return candidate
