"""The harness's results as Markdown tables and a latency CDF plot (matplotlib PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import size_label

COLOURS = {
    "elog-stream": "tab:blue",
    "relay": "tab:orange",
    "poller": "tab:grey",
    "visdom": "tab:red",
}
STYLES = ["-", "--", ":", "-."]


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        f"# elog-stream benchmark, {meta['date']}",
        "",
        f"`{meta['command']}` (commit {meta['commit']})",
        "",
        f"{meta['cores']} cores; load average {meta['load_before']} before, "
        f"{meta['load_after']} after; clients in {meta['workers']} processes; "
        f"{meta['versions']}. Latency: from the start of the publish call to the image's last "
        'byte at a client; "last viewer": per image, to the last of the N clients.',
        "",
        "## Publish → viewer latency and fan-out",
        "",
    ]
    rows = []
    for r in results["latency"]:
        if "error" in r:
            rows.append([size_label(r["size_bytes"]), r["viewers"], r["target"], r["error"]])
            rows[-1] += [None] * 8
            continue
        starved = " (client-starved)" if r.get("client_starved") else ""
        rows.append(
            [
                size_label(r["size_bytes"]), r["viewers"], r["target"] + starved,
                f"{r['delivered']:,}/{r['expected']:,}", r["p50_ms"], r["p90_ms"], r["p99_ms"],
                r["last_of_n_p50_ms"], r.get("fanout_MB_per_s"), r.get("machine_busy_pct"),
                r.get("server_cpu_s"), r.get("clients_cpu_s"),
            ]
        )  # fmt: skip
    out += _table(
        ["image", "viewers", "target", "delivered", "p50 ms", "p90 ms", "p99 ms",
         "last viewer p50 ms", "fan-out MB/s", "machine busy %", "server CPU s", "clients CPU s"],
        rows,
    )  # fmt: skip
    out += ["## Ratios, same run", ""]
    out += ["ours/relay: ≤ 1 means as fast or faster; ×: how many times faster ours is.", ""]
    out += _table(
        ["image", "viewers", "p50 ours/relay", "p99 ours/relay", "MB/s ours/relay",
         "× the 1 Hz poller (p50)", "× visdom (last viewer p50)"],
        [
            [size_label(r["size_bytes"]), r["viewers"], r["vs_relay_p50"], r["vs_relay_p99"],
             r["vs_relay_fanout"], r["poller_x"], r["visdom_x"]]
            for r in results["ratios"]
        ],
    )  # fmt: skip
    for ladder in results["rate"]:
        if "error" in ladder:
            out += [f"## Per-topic rate, {ladder['target']}: {ladder['error']}", ""]
            continue
        out += [
            f"## Per-topic rate, {ladder['target']} ({ladder['viewers']} viewers, "
            f"{size_label(ladder['size_bytes'])})",
            "",
            "Highest rate with p50 ≤ 2× the lowest rate's and ≥ 90 % delivered: "
            f"**{_cell(ladder['highest_flat_rate_hz'])} Hz** (stopped by: {ladder['stopped_by']}).",
            "",
        ]
        out += _table(
            ["rate Hz", "published Hz", "p50 ms", "p99 ms", "delivered %"],
            [[s["rate_hz"], s["published_hz"], s["p50_ms"], s["p99_ms"], s["delivered_pct"]]
             for s in ladder["steps"]],
        )  # fmt: skip
    out += ["## Server memory per idle viewer", ""]
    out += _table(
        ["target", "idle viewers", "counted by the server", "RSS before MB", "RSS after MB",
         "KB per viewer"],
        [
            [m["target"], m["viewers"], m.get("counted_by_server"), m.get("rss_before_MB"),
             m.get("rss_after_MB"), m.get("per_viewer_KB", m.get("not_measured"))]
            for m in results["memory"]
        ],
    )  # fmt: skip
    show = results.get("elogshow")
    if show:
        out += [
            f"## elogshow wall time ({show['repeats']} figures, PNG {show['png_bytes']:,} B)",
            "",
        ]
        out += _table(
            ["phase", "p50 ms", "p90 ms", "p99 ms"],
            [[name, show[name]["p50_ms"], show[name]["p90_ms"], show[name]["p99_ms"]]
             for name in ("draw", "encode", "redis", "elogshow")],
        )  # fmt: skip
        out += [f"Overhead beyond draw + encode: **{show['overhead_ms']} ms**.", ""]
    out += ["## Targets (issue 12)", ""]
    out += _table(
        ["target", "measured", "met", "by", "note"],
        [[t["target"], t["measured"], t["met"], t.get("by"), t.get("note")]
         for t in results["targets"]],
    )  # fmt: skip
    if results.get("not_measured"):
        out += ["## Not measured here", ""]
        out += [f"- {line}" for line in results["not_measured"]] + [""]
    return "\n".join(out)


def cdf_plot(samples: dict[str, list[float]], path: Path) -> None:
    """One panel per image size: the latency CDF of each target and viewer count."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy
    from matplotlib.figure import Figure

    keys = [key.split("|") for key in samples]
    sizes = sorted({int(size) for _, _, size in keys})
    viewer_counts = sorted({int(viewers) for _, viewers, _ in keys})
    figure = Figure(figsize=(5 * len(sizes) + 2, 4.2), layout="constrained")
    axes = figure.subplots(1, len(sizes), squeeze=False)[0]
    for ax, size in zip(axes, sizes, strict=True):
        for key, values in samples.items():
            target, viewers, key_size = key.split("|")
            if int(key_size) != size or not values:
                continue
            ordered = numpy.sort(values)
            fraction = numpy.arange(1, len(ordered) + 1) / len(ordered)
            ax.step(
                ordered, fraction, where="post", color=COLOURS.get(target, "black"),
                linestyle=STYLES[viewer_counts.index(int(viewers)) % len(STYLES)],
                label=f"{target}, {viewers} viewers",
            )  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("publish → viewer latency (ms)")
        ax.set_title(size_label(size) + " images")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of deliveries")
    labelled: dict[str, Any] = {}
    for ax in axes:
        for line, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label, line)
    figure.legend(
        list(labelled.values()), list(labelled), loc="outside right upper", fontsize="small"
    )
    figure.savefig(path, dpi=100)
