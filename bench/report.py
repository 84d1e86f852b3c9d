"""Turn a pytest-benchmark JSON file into bench/README.md's results and a PNG chart.

Usage: python bench/report.py bench/results/latest.json [more.json ...]   (runs are merged)
"""

from __future__ import annotations

import json
import platform
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TORCH_SGD = ["torch-fused", "torch-foreach", "torch-for-loop", "torch-compiled"]


def fmt_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def load(paths: list[Path]):
    data = json.loads(paths[0].read_text())
    for extra in paths[1:]:
        data["benchmarks"] += json.loads(extra.read_text())["benchmarks"]
    rows = defaultdict(dict)
    for b in data["benchmarks"]:
        info = b["extra_info"]
        rows[b["group"]][info.get("contender", b["name"])] = (b["stats"]["median"], info)
    return data, rows


def sgd_table(rows) -> list[str]:
    out = ["| parameters | dtype | options | fusedlr | GB/s (% roofline) | flat=True (% roofline) | "
           + " | ".join(TORCH_SGD) + " |",
           "|---|---|---|---|---|---|" + "---|" * len(TORCH_SGD)]
    for group in sorted(g for g in rows if g.startswith("sgd ")):
        cases = rows[group]
        if "fusedlr" not in cases:
            continue
        ours, info = cases["fusedlr"]
        gbs = info["bytes_per_step"] / ours / 1e9
        llc = " †" if info.get("in_llc") else ""
        cells = []
        for name in TORCH_SGD:
            if name in cases:
                t = cases[name][0]
                cells.append(f"{fmt_time(t)} ({t / ours:.2f}×)")
            else:
                cells.append("–")
        flat = "–"
        if "fusedlr-flat" in cases:
            t, flat_info = cases["fusedlr-flat"]
            flat = f"{fmt_time(t)} ({100 * info['bytes_per_step'] / t / 1e9 / flat_info['roofline_gbs']:.0f} %{llc})"
        _, set_name, dtype, options = group.split(" ")
        out.append(f"| {set_name} ({info['numel']:,}) | {dtype} | {options} | {fmt_time(ours)} | "
                   f"{gbs:.1f} ({100 * gbs / info['roofline_gbs']:.0f} %{llc}) | {flat} | " + " | ".join(cells) + " |")
    return out


def other_table(rows) -> list[str]:
    out = ["| benchmark | contender | median |", "|---|---|---|"]
    for group in sorted(g for g in rows if not g.startswith("sgd ")):
        for name, (t, _) in sorted(rows[group].items()):
            out.append(f"| {group} | {name} | {fmt_time(t)} |")
    return out


def chart(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted(g for g in rows if g.startswith("sgd ") and "fusedlr" in rows[g])
    fig, ax = plt.subplots(figsize=(11, 0.38 * len(groups) + 1.5), constrained_layout=True)
    for k, name in enumerate(TORCH_SGD):
        ys, xs = [], []
        for i, g in enumerate(groups):
            if name in rows[g]:
                ys.append(i + 0.2 * (k - 1.5))
                xs.append(rows[g][name][0] / rows[g]["fusedlr"][0])
        ax.barh(ys, xs, height=0.2, label=name)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(range(len(groups)), [g.removeprefix("sgd ") for g in groups], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("torch time / fusedlr time (> 1: fusedlr faster)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or [HERE / "results" / "latest.json"]
    data, rows = load(paths)
    roofs = [i["roofline_gbs"] for g in rows.values() for _, i in g.values() if "roofline_gbs" in i]
    m = data["machine_info"]
    lines = [
        f"Machine: {m.get('cpu', {}).get('brand_raw', platform.processor())}, {m.get('cpu', {}).get('count', '?')} "
        f"logical CPUs, Python {m.get('python_version')}; run {data['datetime'][:16]} "
        f"(commit {data.get('commit_info', {}).get('id', '?')[:8]}). Roofline (bench/roofline.py: the step's five "
        f"streams with trivial arithmetic, same threads and SIMD level), measured right before and after each "
        f"case, as the bandwidth drifts: {min(roofs):.1f}-{max(roofs):.1f} GB/s over the run." if roofs else "",
        "",
        "One `step()`; medians; in parentheses torch's time / fusedlr's (> 1: fusedlr faster). GB/s counts "
        "the bytes the update must move (fp32: 20 per element, bf16: 10; bfloat16/float32, bf16 parameters with "
        "float32 momentum, which torch does not have: 14), and the % is of the roofline measured "
        "around that case. † marks a case whose tensors fit in the last-level cache: repeated steps read them "
        "from the cache, so they can pass 100 % of the DRAM roofline.",
        "",
        *sgd_table(rows),
        "",
        *other_table(rows),
        "",
        "![ratios](results/chart.png)",
    ]
    chart(rows, HERE / "results" / "chart.png")
    readme = HERE / "README.md"
    text = readme.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + "\n".join(lines) + "\n" + text[end:])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
