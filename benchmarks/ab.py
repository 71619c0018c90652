"""``python -m benchmarks.ab REV``: this checkout's ``AsyncClient`` against the one at git
revision ``REV`` and raw aiohttp, in one interleaved run, so a change's cost is measured on the
same machine in the same minutes (a shared machine's speed drifts more between runs than a
change moves it).

Each round measures, in a fresh process pinned to one core, raw aiohttp, ``AsyncClient`` here
and ``AsyncClient`` at ``REV`` at each concurrency, in a rotating order, against the benchmark's
canned server on the other core; the table gives medians of client CPU per request and the
ratio to aiohttp. A second table gives what the library costs above the transport
(``benchmarks/_overhead.py``: no network, so much less noise), best of the rounds. ``REV`` is
checked out into a temporary worktree, removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .__main__ import ROOT, _canned_server, _cpus, _env

__all__ = ("main",)

CONCURRENCY = (1, 16, 64)


@contextlib.contextmanager
def _worktree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="d360-ab-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                check=False,
                capture_output=True,
            )


def _in_tree(tree: Path, args: list[str], cpu: str | None, key: str) -> float:
    """Run ``python ARGS`` on ``tree``'s d360calling (not the installed one); the number at
    ``key`` of the JSON it prints last."""
    env = _env(cpu)
    env["PYTHONPATH"] = str(tree)
    out = subprocess.run(
        [sys.executable, *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])[key])


def _measure(tree: Path, variant: str, concurrency: int, port: int, cpu: str | None) -> float:
    # 0.5 s of warm-up and 1.5 s measured, as in a full benchmark run.
    args = ["-m", "benchmarks._measure", variant, str(concurrency), str(port), "0.5", "1.5"]
    return _in_tree(tree, args, cpu, "cpu_us")


def _overhead(tree: Path, cpu: str | None) -> float:
    probe = ROOT / "benchmarks" / "_overhead.py"  # this tree's probe, that tree's library
    return _in_tree(tree, [str(probe)], cpu, "us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("rev", help="the git revision to compare against, e.g. HEAD~1")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    args = parser.parse_args(argv)
    client_cpu, server_cpu = _cpus()
    samples: dict[tuple[str, int], list[float]] = {}
    with _worktree(args.rev) as reference, _canned_server(server_cpu) as port:
        contenders = [
            ("aiohttp", ROOT, "aiohttp"),
            ("here", ROOT, "AsyncClient"),
            (args.rev, reference, "AsyncClient"),
        ]
        for round_ in range(args.rounds):
            for c in CONCURRENCY:
                order = contenders[round_ % 3 :] + contenders[: round_ % 3]
                for label, tree, variant in order:
                    cpu_us = _measure(tree, variant, c, port, client_cpu)
                    samples.setdefault((label, c), []).append(cpu_us)
                    print(f"  round {round_ + 1} {label} x{c}: {cpu_us:.0f} µs", file=sys.stderr)
            for label, tree, _ in contenders[1:][:: 1 if round_ % 2 else -1]:
                above = _overhead(tree, client_cpu)
                samples.setdefault((label, 0), []).append(above)
                print(
                    f"  round {round_ + 1} {label} above the transport: {above:.2f} µs",
                    file=sys.stderr,
                )
    print(f"AsyncClient here and at {args.rev}, against raw aiohttp (medians of {args.rounds}):")
    print()
    ref, here = f"{args.rev} µs/req (ratio)", "here µs/req (ratio)"
    print(f"| concurrency | aiohttp µs/req | {ref} | {here} |")
    print("|---:|---:|---:|---:|")
    for c in CONCURRENCY:
        base = statistics.median(samples[("aiohttp", c)])
        old = statistics.median(samples[(args.rev, c)])
        new = statistics.median(samples[("here", c)])
        print(f"| {c} | {base:.0f} | {old:.0f} ({old / base:.2f}) | {new:.0f} ({new / base:.2f}) |")
    old, new = min(samples[(args.rev, 0)]), min(samples[("here", 0)])
    print()
    print("| library CPU per accept_call above the transport (best) | µs |")
    print("|---|---:|")
    print(f"| {args.rev} | {old:.2f} |")
    print(f"| here | {new:.2f} ({new / old - 1:+.0%}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
