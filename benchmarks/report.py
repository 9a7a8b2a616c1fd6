"""Numbers into the harness's outputs: percentiles, ratios, targets, Markdown and the CDF plot."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy

OURS = "elog-stream"
SIZE_FOR_TARGETS = 100_000  # the latency targets were set with 100 KB images


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``values`` (at least one), in the unit given, rounded."""
    array = numpy.asarray(list(values), dtype=float)
    p50, p90, p99 = numpy.percentile(array, [50, 90, 99])
    return {
        "p50_ms": round(float(p50), 2),
        "p90_ms": round(float(p90), 2),
        "p99_ms": round(float(p99), 2),
        "max_ms": round(float(array.max()), 2),
    }


def size_label(size: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


def _row(rows: list[dict[str, Any]], target: str, viewers: int, size: int) -> dict[str, Any]:
    for row in rows:
        if (row["target"], row["viewers"], row["size_bytes"]) == (target, viewers, size):
            return row
    return {}


def _ratio(a: Any, b: Any) -> float | None:
    return (
        round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
    )


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each measured (size, viewers): ours against each baseline in the same run.

    ``vs_relay_*``: ours / relay (≤ 1 is as fast or faster); ``poller_x`` and ``visdom_x``:
    how many times faster ours is (their latency / ours; visdom to the last of N clients).
    """
    found = []
    for size, viewers in sorted({(r["size_bytes"], r["viewers"]) for r in rows}):
        ours = _row(rows, OURS, viewers, size)
        if not ours or "error" in ours:
            continue
        relay = _row(rows, "relay", viewers, size)
        poller = _row(rows, "poller", viewers, size)
        visdom = _row(rows, "visdom", viewers, size)
        found.append(
            {
                "size_bytes": size,
                "viewers": viewers,
                "vs_relay_p50": _ratio(ours["p50_ms"], relay.get("p50_ms")),
                "vs_relay_p99": _ratio(ours["p99_ms"], relay.get("p99_ms")),
                "vs_relay_fanout": _ratio(
                    ours.get("fanout_MB_per_s"), relay.get("fanout_MB_per_s")
                ),
                "poller_x": _ratio(poller.get("p50_ms"), ours["p50_ms"]),
                "visdom_x": _ratio(visdom.get("last_of_n_p50_ms"), ours["last_of_n_p50_ms"]),
            }
        )
    return found


def _target(
    name: str, value: Any, limit: float, unit: str = "", note: str = "", at_least: bool = False
) -> dict[str, Any]:
    """A target ``value ≤ limit`` (``≥`` with ``at_least``); ``by``: how far off it is."""
    if not isinstance(value, int | float):
        return {"target": name, "measured": None, "met": None, "note": note or "not measured"}
    met = value >= limit if at_least else value <= limit
    return {
        "target": name,
        "measured": value,
        "met": met,
        "by": f"{value - limit:+.2f} {unit}".strip(),
        "note": note,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 12's targets, each met or missed by how much."""
    rows = results["latency"]
    sizes = sorted({r["size_bytes"] for r in rows})
    size = SIZE_FOR_TARGETS if SIZE_FOR_TARGETS in sizes or not sizes else sizes[0]
    at = size_label(size)
    ours = {v: _row(rows, OURS, v, size) for v in (1, 10, 100, 1000)}
    found = [
        _target(f"1 viewer p50 ≤ 2 ms ({at})", ours[1].get("p50_ms"), 2, "ms"),
        _target(f"1 viewer p99 ≤ 5 ms ({at})", ours[1].get("p99_ms"), 5, "ms"),
        _target(f"10 viewers p50 ≤ 3 ms ({at})", ours[10].get("p50_ms"), 3, "ms"),
    ]
    by_size = {(r["size_bytes"], r["viewers"]): r for r in results["ratios"]}
    for viewers in (100, 1000):
        ratio = by_size.get((size, viewers), {})
        starved = ours[viewers].get("client_starved", False)
        note = "client-starved: clients and service share too few cores" if starved else ""
        for p in ("p50", "p99"):
            name = f"{viewers} viewers {p} ≤ 1.0× the relay ({at})"
            found.append(_target(name, ratio.get(f"vs_relay_{p}"), 1.0, "×", note))
    # Where the fan-out, not the one publisher's round trips, limits: 100 viewers and more.
    fanouts = [r for r in results["ratios"] if r["vs_relay_fanout"] is not None]
    fanouts = [r for r in fanouts if r["viewers"] >= 100] or fanouts
    worst = min(fanouts, key=lambda r: r["vs_relay_fanout"]) if fanouts else {}
    where = (
        f"worst row: {worst['viewers']} viewers, {size_label(worst['size_bytes'])}" if worst else ""
    )
    found.append(
        _target(
            "fan-out ≥ 0.9× the relay's MB/s", worst.get("vs_relay_fanout"), 0.9, "×", where, True
        )
    )
    visdom = by_size.get((size, 100), {}).get("visdom_x")
    note = "" if visdom is not None else results.get("visdom_status", "")
    name = f"≥ 20× faster than visdom at 100 viewers ({at}, to the last viewer)"
    found.append(_target(name, visdom, 20, "×", note, True))
    memory = [m for m in results["memory"] if m.get("target") == OURS and "per_viewer_KB" in m]
    largest = max(memory, key=lambda m: m["viewers"]) if memory else {}
    note = f"at {largest['viewers']:,} idle viewers" if largest else ""
    found.append(
        _target("≤ 20 KB memory per idle viewer", largest.get("per_viewer_KB"), 20, "KB", note)
    )
    big = [m for m in results["memory"] if m.get("target") == OURS and m["viewers"] >= 50_000]
    fits = big[0] if big else {}
    found.append(
        {
            "target": "50,000 idle viewers on one process",
            "measured": fits.get("counted_by_server"),
            "met": fits.get("counted_by_server") == 50_000 if "counted_by_server" in fits else None,
            "note": fits.get("not_measured", "" if fits else "not asked for"),
        }
    )
    show = results.get("elogshow") or {}
    found.append(
        _target("elogshow overhead beyond draw+encode ≤ 1 ms", show.get("overhead_ms"), 1, "ms")
    )
    return found
