"""``python -m benchmarks [--quick]``: d360calling against raw aiohttp, httpx and requests.
(``--media``: only the media benchmark; ``--fleet``: only the fleet benchmark.)

Starts the canned server (and, for the call-bot scenario, the fake API) in their own
processes on their own core, runs every (client, concurrency) pair in a fresh process on the
other core - interleaved, ``--runs`` times - and reports medians as a Markdown table, JSON and
a PNG chart in ``--out``. Targets are ratios within this one run, so a busy machine moves both
sides of each ratio together. ``--report docs/benchmarks.md`` (full runs only) also writes the
tables and a link to the chart into that page, between its markers; nothing writes README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _codec

# (client, concurrencies): threads for the sync clients, in-flight requests for the async ones.
MATRIX: list[tuple[str, tuple[int, ...]]] = [
    ("aiohttp", (1, 16, 64, 512)),
    ("aiohttp (uvloop, orjson)", (1, 16, 64, 512)),
    ("AsyncClient", (1, 16, 64, 512)),
    ("AsyncClient [speedups]", (1, 16, 64, 512)),
    ("Client", (1, 16, 64)),
    ("Client [speedups]", (1, 16, 64)),
    ("httpx.AsyncClient", (1, 16, 64, 512)),
    ("requests.Session", (1, 16, 64)),
]
QUICK_CONCURRENCY = (1, 16, 64)
CALLBOT_CALLS = 1_000
ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
REPORT_MARKERS = ("<!-- benchmarks:start -->", "<!-- benchmarks:end -->")


def _cpus() -> tuple[str | None, str | None]:
    """(client CPU, server CPU): separate cores where the machine has two or more."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return None, None
    if len(available) < 2:
        return None, None
    return str(available[0]), str(available[-1])


def _env(cpu: str | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("BENCH_CPU", None)
    if cpu is not None:
        env["BENCH_CPU"] = cpu
    return env


@contextlib.contextmanager
def _canned_server(cpu: str | None) -> Iterator[int]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._server", port_file], env=_env(cpu), cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(port_file):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the benchmark server did not start")
                time.sleep(0.02)
            yield int(Path(port_file).read_text())
        finally:
            proc.terminate()
            proc.wait(10)


@contextlib.contextmanager
def _fake_api(cpu: str | None) -> Iterator[str]:
    cmd = [sys.executable, "-m", "d360calling", "fake-server", "--port", "0"]
    cmd += ["--answer-window", "3600"]
    proc = subprocess.Popen(cmd, env=_env(cpu), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "fake 360dialog Calling API on http://...:port (...)"
        url = next((w for w in first.split() if w.startswith("http://")), None)
        if url is None:
            raise RuntimeError(f"the fake API did not start: {first!r}")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _run_json(args: list[str], cpu: str | None, timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", *args],
        env=_env(cpu),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def throughput(
    args: argparse.Namespace, client_cpu: str | None, server_cpu: str | None
) -> list[dict[str, Any]]:
    pairs = [
        (name, c)
        for name, concurrencies in MATRIX
        for c in concurrencies
        if not args.quick or c in QUICK_CONCURRENCY
    ]
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {pair: [] for pair in pairs}
    with _canned_server(server_cpu) as port:
        for run in range(args.runs):
            # Interleaved, and each run in another order, so drift hits every client alike.
            order = pairs[run % len(pairs) :] + pairs[: run % len(pairs)]
            for name, c in order:
                measured = _run_json(
                    [
                        "benchmarks._measure",
                        name,
                        str(c),
                        str(port),
                        str(args.warmup),
                        str(args.seconds),
                    ],
                    client_cpu,
                    timeout=120,
                )
                samples[(name, c)].append(measured)
                print(
                    f"  run {run + 1}/{args.runs} {name} x{c}: {measured['cpu_us']:.0f} µs/req",
                    file=sys.stderr,
                )
    rows = []
    for (name, c), runs in samples.items():
        row: dict[str, Any] = {"client": name, "concurrency": c, "runs": len(runs)}
        for key in ("rps", "cpu_us", "p50_ms", "p99_ms", "peak_rss_mib"):
            row[key] = _median([r[key] for r in runs])
        row["errors"] = sum(r["errors"] for r in runs)
        row["first_error"] = next((r["first_error"] for r in runs if r["first_error"]), None)
        rows.append(row)
    return rows


def callbot(client_cpu: str | None, server_cpu: str | None) -> dict[str, Any]:
    with _fake_api(server_cpu) as url:
        from d360calling.testing import DEFAULT_API_KEY

        return _run_json(
            ["benchmarks._callbot", url, DEFAULT_API_KEY, str(CALLBOT_CALLS)],
            client_cpu,
            timeout=300,
        )


def _row(rows: list[dict[str, Any]], client: str, concurrency: int) -> dict[str, Any] | None:
    return next(
        (r for r in rows if r["client"] == client and r["concurrency"] == concurrency), None
    )


def targets(rows: list[dict[str, Any]], bot: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 5 as (what, measured ratio, bound, met)."""
    out: list[dict[str, Any]] = []

    def ratio(
        what: str, a: tuple[str, int], b: tuple[str, int], key: str, bound: float, at_most: bool
    ) -> None:
        ra, rb = _row(rows, *a), _row(rows, *b)
        if ra is None or rb is None or not ra[key] or not rb[key]:
            return
        value = ra[key] / rb[key]
        out.append(
            {
                "target": what,
                "value": value,
                "bound": bound,
                "met": value <= bound if at_most else value >= bound,
            }
        )

    concurrencies = sorted({r["concurrency"] for r in rows if r["client"] == "AsyncClient"})
    for c in concurrencies:
        ratio(
            f"AsyncClient CPU/req vs aiohttp, same loop, x{c}",
            ("AsyncClient", c),
            ("aiohttp", c),
            "cpu_us",
            1.10,
            True,
        )
        ratio(
            f"AsyncClient CPU/req vs aiohttp on uvloop+orjson, same loop, x{c}",
            ("AsyncClient [speedups]", c),
            ("aiohttp (uvloop, orjson)", c),
            "cpu_us",
            1.10,
            True,
        )
        ratio(
            f"AsyncClient [speedups] CPU/req vs aiohttp defaults, x{c}",
            ("AsyncClient [speedups]", c),
            ("aiohttp", c),
            "cpu_us",
            0.85,
            True,
        )
    ratio(
        "Client, 1 thread, req/s vs requests.Session",
        ("Client", 1),
        ("requests.Session", 1),
        "rps",
        2.0,
        False,
    )
    ratio(
        "Client, 16 threads, req/s vs AsyncClient x16",
        ("Client", 16),
        ("AsyncClient", 16),
        "rps",
        0.7,
        False,
    )
    ratio(
        "AsyncClient req/s vs httpx.AsyncClient, x64",
        ("AsyncClient", 64),
        ("httpx.AsyncClient", 64),
        "rps",
        15.0,
        False,
    )
    if bot:
        out.append(
            {
                "target": "call bot: errors",
                "value": bot["errors"],
                "bound": 0,
                "met": bot["errors"] == 0,
            }
        )
        per_call = max(
            v
            for v in (bot["heap_peak_kib_per_call"], bot["rss_growth_kib_per_call"])
            if v is not None
        )
        out.append(
            {
                "target": "call bot: KiB per in-flight call",
                "value": per_call,
                "bound": 64,
                "met": per_call < 64,
            }
        )
    return out


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in ("d360calling", "aiohttp", "orjson", "uvloop", "httpx", "requests"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": model,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f". {report['settings']}",
        "",
        "| client | concurrency | req/s | client CPU µs/req | p50 ms | p99 ms | peak RSS MiB "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["throughput"]:
        lines.append(
            f"| {r['client']} | {r['concurrency']} | {_fmt(r['rps'])} | {_fmt(r['cpu_us'])} | "
            f"{_fmt(r['p50_ms'], 2)} | {_fmt(r['p99_ms'], 2)} | {_fmt(r['peak_rss_mib'], 1)} "
            f"| {r['errors']} |"
        )
    bot = report["callbot"]
    if bot:
        lines += [
            "",
            f"Call bot: {bot['calls']:,} simultaneous inbound calls, "
            "each pre_accept → accept → terminate "
            f"({bot['requests']:,} requests against the fake API): {bot['seconds']:.2f} s, "
            f"{bot['errors']} errors, {bot['cpu_us_per_request']:.0f} µs CPU per request, "
            f"{bot['heap_peak_kib_per_call']:.1f} KiB Python heap and "
            f"{_fmt(bot['rss_growth_kib_per_call'], 1)} KiB RSS per in-flight call.",
        ]
    lines += ["", "| converter | µs |", "|---|---:|"]
    lines += [f"| {r['case']} | {r['us']:.2f} |" for r in report["codec"]]
    lines += ["", "| target | measured | bound | met |", "|---|---:|---:|:---:|"]
    for t in report["targets"]:
        lines.append(
            f"| {t['target']} | {t['value']:.2f} | {t['bound']} "
            f"| {'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = chart_figure(report)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_figure(report: dict[str, Any]) -> Any:
    """The chart's figure: the two panels, and one legend for both below them, where it
    covers no bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["throughput"]
    clients = list(dict.fromkeys(r["client"] for r in rows))
    concurrencies = sorted({r["concurrency"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.6))
    width = 0.8 / len(clients)
    for i, client in enumerate(clients):
        for ax, key in zip(axes, ("cpu_us", "rps"), strict=True):
            xs, ys = [], []
            for j, c in enumerate(concurrencies):
                row = _row(rows, client, c)
                if row and row[key]:
                    xs.append(j + i * width)
                    ys.append(row[key])
            ax.bar(xs, ys, width, label=client if ax is axes[0] else None)
    for ax, title in zip(
        axes,
        ("client CPU µs per request (lower is better)", "requests/s (higher is better)"),
        strict=True,
    ):
        ax.set_yscale("log")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(concurrencies))])
        ax.set_xticklabels([f"x{c}" for c in concurrencies])
        ax.set_xlabel("concurrency (threads for the sync clients)")
        ax.set_title(title)
    fig.suptitle(
        f"d360calling {report['machine']['versions'].get('d360calling', '')}: "
        "~1.5 KB accept over loopback"
    )
    columns = min(len(clients), 4)
    fig.legend(loc="lower center", ncol=columns, fontsize=8, frameon=False)
    rows_of_legend = -(-len(clients) // columns)
    fig.tight_layout(rect=(0, 0.035 * rows_of_legend + 0.02, 1, 1))
    return fig


def update_report(report: Path, table: str, chart_path: Path) -> None:
    """Replace what lies between the report's benchmark markers with a link to the chart
    (relative to the report) and ``table``."""
    text = report.read_text()
    start, end = REPORT_MARKERS
    head, found, rest = text.partition(start)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        raise SystemExit(f"{report} has no {start} ... {end} markers")
    link = Path(os.path.relpath(chart_path.resolve(), report.resolve().parent)).as_posix()
    image = f"![client CPU per request and requests/s by client and concurrency]({link})\n\n"
    report.write_text(f"{head}{start}\n{image}{table}{end}{tail}")


def _media_section(quick: bool) -> int:
    try:
        from . import _media  # aiortc: only with the media extra
    except ImportError:
        print('the media benchmark needs the media extra: pip install "d360calling[media]"')
        return 2
    return _media.main(["--calls", "1", "--seconds", "2"] if quick else [])


def _fleet_section(quick: bool, out: Path) -> int:
    try:
        from . import _fleet  # redis-py: only with the redis extra
    except ImportError:
        print('the fleet benchmark needs the redis extra: pip install "d360calling[redis]"')
        return 2
    return _fleet.main([*(["--quick"] if quick else []), "--out", str(out)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="one short run of each (< 1 min): a smoke test"
    )
    parser.add_argument(
        "--runs", type=int, help="interleaved runs of each pair (default 5; quick 1)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help=f"write the tables into PATH, e.g. {REPORT.relative_to(ROOT)} (full runs only)",
    )
    parser.add_argument(
        "--media",
        action="store_true",
        help="only the media benchmark (needs the media extra; = python -m benchmarks._media)",
    )
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="only the fleet benchmark: receiver workers on Redis vs in memory (needs the "
        "redis extra and redis-server; = python -m benchmarks._fleet), into --out",
    )
    args = parser.parse_args(argv)
    if args.media and args.fleet:
        parser.error("--media and --fleet are separate runs: give one")
    if args.fleet and args.report is not None:
        parser.error("--report takes the main benchmark's tables, not --fleet's")
    if args.media:
        return _media_section(args.quick)
    if args.fleet:
        return _fleet_section(args.quick, args.out)
    if args.report is not None and args.quick:
        parser.error("--report takes a full run: a --quick one measures too little to report")
    args.runs = args.runs or (1 if args.quick else 5)
    args.warmup, args.seconds = (0.2, 0.3) if args.quick else (0.5, 1.5)
    client_cpu, server_cpu = _cpus()
    print(f"client on CPU {client_cpu}, servers on CPU {server_cpu}", file=sys.stderr)
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": (
            f"Median of {args.runs} interleaved run(s), {args.seconds:g} s each after "
            f"{args.warmup:g} s warm-up; client pinned to CPU {client_cpu}, server to CPU "
            f"{server_cpu}; pools sized to the concurrency."
        ),
    }
    report["throughput"] = throughput(args, client_cpu, server_cpu)
    report["callbot"] = callbot(client_cpu, server_cpu)
    report["codec"] = _codec.run(args.quick)
    report["targets"] = targets(report["throughput"], report["callbot"])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "latest"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / f"{stem}.md").write_text(text)
    chart(report, args.out / f"{stem}.png")
    print(text)
    print(f"wrote {args.out / stem}.{{md,json,png}}", file=sys.stderr)
    errors = sum(r["errors"] for r in report["throughput"]) + report["callbot"]["errors"]
    if args.report is not None and not errors:
        update_report(args.report, text, args.out / f"{stem}.png")
        print(f"wrote {args.report}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
