"""The benchmark command runs from this checkout (``--quick``): CI checks that it works and
that every client did real work without errors, never how fast anything was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_benchmark_runs_every_client_and_writes_its_reports(tmp_path: Path) -> None:
    from benchmarks.__main__ import MATRIX, QUICK_CONCURRENCY

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "quick.json").read_text())

    expected = {(name, c) for name, cs in MATRIX for c in cs if c in QUICK_CONCURRENCY}
    measured = {(r["client"], r["concurrency"]) for r in report["throughput"]}
    assert measured == expected
    for row in report["throughput"]:
        assert row["errors"] == 0, row
        assert row["rps"] > 0, row
        assert row["cpu_us"] > 0, row
        assert row["p99_ms"] >= row["p50_ms"] > 0, row

    bot = report["callbot"]
    assert (bot["calls"], bot["requests"], bot["errors"]) == (1000, 3000, 0)
    assert bot["heap_peak_kib_per_call"] > 0

    cases = {r["case"] for r in report["codec"]}
    assert {"encode connect", "decode permissions", "parse connect webhook"} <= cases
    assert all(r["us"] > 0 for r in report["codec"])
    assert {t["target"] for t in report["targets"]} >= {
        "call bot: errors",
        "Client, 1 thread, req/s vs requests.Session",
    }

    table = (tmp_path / "quick.md").read_text()
    assert "| client | concurrency | req/s |" in table
    assert "| AsyncClient | 64 |" in table
    assert table in done.stdout
    assert (tmp_path / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
