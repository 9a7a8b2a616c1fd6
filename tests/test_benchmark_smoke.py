"""The benchmark harness's smoke run, so that it cannot rot: every row written, with numbers.

Nothing about speed is asserted here (speed is for docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SIZE = 10_000


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("smoke")
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.harness", "--smoke", "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.timeout(600)
def test_every_latency_row_has_numbers(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    rows = {(r["target"], r["viewers"]): r for r in results["latency"]}
    assert set(rows) == {
        ("elog-stream", 1), ("relay", 1), ("poller", 1), ("elog-stream", 10), ("relay", 10),
    }  # fmt: skip
    for (target, viewers), row in rows.items():
        assert "error" not in row, row
        assert row["size_bytes"] == SIZE
        assert 0 < row["delivered"] <= row["expected"]
        for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
            assert number(row[key]), (target, viewers, key, row[key])
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        if target != "poller":
            assert number(row["fanout_MB_per_s"]) and row["fanout_MB_per_s"] > 0
            assert number(row["server_cpu_s"]) and number(row["clients_cpu_s"])


@pytest.mark.timeout(600)
def test_ratios_rates_memory_and_elogshow(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, results = smoke
    ratios = {r["viewers"]: r for r in results["ratios"]}
    assert set(ratios) == {1, 10}
    for ratio in ratios.values():
        assert number(ratio["vs_relay_p50"]) and number(ratio["vs_relay_p99"])
        assert number(ratio["vs_relay_fanout"])
    assert number(ratios[1]["poller_x"])
    assert [ladder["target"] for ladder in results["rate"]] == ["elog-stream", "relay"]
    for ladder in results["rate"]:
        assert ladder["highest_flat_rate_hz"] in (None, 10, 50)  # None: not flat even at 10 Hz
        assert isinstance(ladder["stopped_by"], str)
        assert all(number(step["p50_ms"]) for step in ladder["steps"])
    memory = {m["target"]: m for m in results["memory"]}
    assert set(memory) == {"elog-stream", "relay"}
    for entry in memory.values():
        assert entry["viewers"] == 20 and entry["counted_by_server"] == 20
        assert isinstance(entry["per_viewer_KB"], int | float)
    show = results["elogshow"]
    for phase in ("draw", "encode", "redis", "elogshow"):
        assert number(show[phase]["p50_ms"])
    assert isinstance(show["overhead_ms"], int | float)
    assert all(t["met"] in (True, False, None) for t in results["targets"])
    assert "visdom" in results["visdom_status"]


@pytest.mark.timeout(600)
def test_markdown_and_plot_are_written(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, _ = smoke
    text = (out / "results.md").read_text()
    assert "| 10 KB | 1 | elog-stream |" in text
    assert "## Targets (issue 12)" in text
    assert (out / "latency-cdf.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    samples = json.loads((out / "latencies.json").read_text())
    assert samples[f"elog-stream|10|{SIZE}"]
