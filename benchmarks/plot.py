"""The benchmark's picture: throughput per peer and batch size, and each operation's cost.

    python -m benchmarks.plot [benchmarks/results/latest.json] [out.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {
    "pillow": "#7f7f7f",
    "pillow-threads": "#c7c7c7",
    "pyvips": "#2ca02c",
    "ours-cpu": "#1f77b4",
    "ours-cuda": "#d62728",
    "ours-cuda-libjpeg": "#ff9896",
    "ours-cuda-hybrid": "#9467bd",
}


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """Write a two-panel PNG: images/s per peer per batch size; per-op ms/image ours vs Pillow."""
    jobs = [r for r in result["jobs"] if "error" not in r]
    sizes = sorted({r["n"] for r in jobs})
    peers = [p for p in COLOURS if any(r["peer"] == p for r in jobs)]
    per_op = result.get("per_op_cpu", {}).get("rows", [])

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1.25, 1]})
    width = 0.8 / max(1, len(peers))
    for i, peer in enumerate(peers):
        xs, ys = [], []
        for j, n in enumerate(sizes):
            row = next((r for r in jobs if r["peer"] == peer and r["n"] == n), None)
            if row is not None:
                xs.append(j + (i - (len(peers) - 1) / 2) * width)
                ys.append(row["images_per_s"])
        bars = left.bar(xs, ys, width, label=peer, color=COLOURS[peer])
        left.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    left.set_xticks(range(len(sizes)), [f"{n} image{'s' if n > 1 else ''}" for n in sizes])
    left.set_ylabel("images/s (higher is better)")
    left.set_title("Reference job: 1080p JPEG -> resize 800 -> sharpen -> adjust -> JPEG q85")
    left.set_ylim(0, left.get_ylim()[1] * 1.18)  # headroom for the legend
    left.legend(fontsize=8, loc="upper center", ncol=len(peers))
    left.grid(axis="y", alpha=0.3)

    if per_op:
        labels = [row["op"] for row in per_op]
        ys = range(len(labels))
        h = 0.4
        ours = right.barh([y - h / 2 for y in ys], [r["ours_batch_ms"] for r in per_op], h, color=COLOURS["ours-cpu"],
                          label=f"ours (CPU, batch of {result['per_op_cpu']['n']})")
        pil = right.barh([y + h / 2 for y in ys], [r["pillow_ms"] for r in per_op], h, color=COLOURS["pillow"],
                         label="Pillow")
        right.bar_label(ours, fmt="%.1f", fontsize=7, padding=2)
        right.bar_label(pil, fmt="%.1f", fontsize=7, padding=2)
        right.set_yticks(list(ys), labels, fontsize=8)
        right.invert_yaxis()
        right.set_xlabel("ms per image (lower is better)")
        right.set_title("Where the time goes, CPU")
        right.legend(fontsize=8)
        right.grid(axis="x", alpha=0.3)
    else:
        right.axis("off")

    m = result["machine"]
    fig.suptitle(f"{m['cpu']}, {m['logical_cores']} cores; torch {result['versions']['torch']} "
                 f"({result['torch']['intra_op_threads']} threads); {result['date'][:10]}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    source = Path(argv[0]) if argv else Path(__file__).parent / "results" / "latest.json"
    target = Path(argv[1]) if len(argv) > 1 else source.with_name("throughput.png")
    print(plot(json.loads(source.read_text()), target))


if __name__ == "__main__":
    main()
