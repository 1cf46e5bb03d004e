"""Plots for scripts/compare: reads OUT/results.json, writes OUT/latency.png (latency
percentiles per broker for each workload, log scale) and OUT/throughput.png (MB/s bars of the
max-throughput workloads against the loopback ceiling). Run with the compare venv's python."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PCTS = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"), ("p9999", "p99.99"),
        ("max", "max")]


def broker_colors(results):
    """One colour per broker, in the order the brokers were run, shared by both plots."""
    order = []
    for per in results.values():
        order += [b for b in per if b not in order]
    return {b: f"C{i}" for i, b in enumerate(order)}


def latency_plot(results, path):
    colors = broker_colors(results)
    panels = []
    for name, per in results.items():
        panels.append((f"{name}: produce", {b: r["produce_latency_ms"] for b, r in per.items()}))
        if any(r["e2e_latency_ms"]["count"] for r in per.values()):
            panels.append((f"{name}: end-to-end", {b: r["e2e_latency_ms"] for b, r in per.items()}))
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.6 * rows), squeeze=False)
    for ax, (title, per) in zip(axes.flat, panels):
        xs = range(len(PCTS))
        for b, p in per.items():
            ax.plot(xs, [max(p[k], 1e-3) for k, _ in PCTS], marker="o", label=b, color=colors[b])
        ax.set_xticks(list(xs), [label for _, label in PCTS])
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def throughput_plot(results, link, path):
    names = [n for n, per in results.items() if any(r.get("kind") == "max" for r in per.values())]
    colors = broker_colors(results)
    brokers = [b for b in colors if any(b in results[n] for n in names)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(brokers))
    for i, b in enumerate(brokers):
        vals = [results[n].get(b, {}).get("produce", {}).get("mb_per_sec", 0) for n in names]
        xs = [j + i * width for j in range(len(names))]
        bars = ax.bar(xs, vals, width, label=b, color=colors[b])
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks([j + width * (len(brokers) - 1) / 2 for j in range(len(names))], names)
    if link:
        ax.axhline(link["acked"]["mb_per_sec"], color="grey", ls="--",
                   label=f"loopback ceiling ({link['acked']['mb_per_sec']:.0f} MB/s)")
    ax.set_ylabel("MB/s produced (acknowledged)")
    ax.set_title("Max throughput, 1 KiB records, 16 partitions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    out = Path(sys.argv[1])
    data = json.loads((out / "results.json").read_text())
    if not data["results"]:
        print("no results to plot")
        return
    latency_plot(data["results"], out / "latency.png")
    throughput_plot(data["results"], data["link"], out / "throughput.png")
    print(f"wrote {out / 'latency.png'} and {out / 'throughput.png'}")


if __name__ == "__main__":
    main()
