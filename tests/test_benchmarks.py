"""The benchmark command runs from this checkout (``--quick``): CI checks that it works and
that every client did real work without errors, never how fast anything was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
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


def test_the_report_gets_the_tables_and_a_link_to_the_chart_between_its_markers(
    tmp_path: Path,
) -> None:
    from benchmarks.__main__ import update_report

    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    doc.write_text("# B\n<!-- benchmarks:start -->\nold\n<!-- benchmarks:end -->\nwhy\n")
    update_report(doc, "| client |\n", tmp_path / "results" / "latest.png")
    assert doc.read_text() == (
        "# B\n<!-- benchmarks:start -->\n"
        "![client CPU per request and requests/s by client and concurrency]"
        "(../results/latest.png)\n\n| client |\n<!-- benchmarks:end -->\nwhy\n"
    )
    unmarked = tmp_path / "other.md"
    unmarked.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- benchmarks:start -->"):
        update_report(unmarked, "x", doc)
    assert unmarked.read_text() == "no markers\n"


def test_a_quick_run_refuses_to_write_a_report() -> None:
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--quick", "--report", "docs/benchmarks.md"])
    assert exited.value.code == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_ab_command_compares_against_a_revision_and_cleans_up() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ab", "HEAD", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "16", "64"]
    above = {line.split("|")[1].strip(): line.split("|")[2] for line in lines[-2:]}
    assert set(above) == {"HEAD", "here"}
    assert all(float(value.split()[0]) > 0 for value in above.values())
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[1]) > 0
        assert all("(" in cell and float(cell.split()[0]) > 0 for cell in cells[2:])
    worktrees = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "d360-ab-" not in worktrees


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_hardening_measurement_stays_within_its_bounds() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.hardening", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "tasks" in line]
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert len([line for line in done.stdout.splitlines() if line.endswith("| yes |")]) == 3
    assert "503" in rows[-1]  # the flood was refused by the event cap, not by accident


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_media_benchmark_gets_audio_on_every_call_of_both_bots(tmp_path: Path) -> None:
    # One call of each bot for 2 s against the fake's media mode in its own process: every
    # call heard the user's tone with at most 5 % of packets lost. Never how fast.
    pytest.importorskip("aiortc")
    out = tmp_path / "media.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks._media", "--calls", "1", "--seconds", "2"),
            *("--json", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert sorted(r["kind"] for r in rows) == ["aiortc (plain)", "d360calling"]
    for row in rows:
        assert row["calls"] == 1, row
        assert row["with_audio"] == 1, row
        assert row["min_frames"] > 0, row
        assert row["packets_received"] > 0, row
        assert row["loss"] <= 0.05, row
        assert row["cpu_per_call_second"] > 0, row
    assert "| d360calling | 1 |" in done.stdout
