"""How long `make test`'s pytest takes: the whole suite in pytest-xdist workers (the default,
``-n 2`` in pyproject.toml) against the same suite in one process (``-n 0``, the baseline), in
one run on this machine. Ruff and mypy, which `make test` runs first, take seconds and are left
out.

Each run is a pytest of its own on the project's test databases (embedded PostgreSQL unless
DATABASE_URL is set), one after the other, never at once; a failing run is reported and counts.

    .venv/bin/python bench/test_suite.py [--workers 2] [--only-parallel] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_suite(workers: int, extra: list[str]) -> tuple[float, str]:
    """(wall seconds, pytest's last line) of one run with ``-n workers``."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers),
            *extra]
    print(f"  running: {' '.join(argv[1:])}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)),
                   lines[-1] if lines else f"exit {done.returncode}")
    print(f"  -n {workers}: {wall / 60:.1f} min ({summary.strip('= ')})", flush=True)
    for line in lines:
        if line.startswith(("FAILED ", "ERROR ")):
            print(f"    {line}", flush=True)
    return wall, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2,
                        help="pytest-xdist workers of the measured run (default 2, as make test)")
    parser.add_argument("--only-parallel", action="store_true",
                        help="skip the one-process baseline (it takes about twice as long)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    parallel, _ = run_suite(args.workers, args.pytest_args)
    print(f"pytest in {args.workers} workers: {parallel / 60:.1f} min")
    if not args.only_parallel:
        serial, _ = run_suite(0, args.pytest_args)
        print(f"pytest in one process:  {serial / 60:.1f} min (baseline)")
        print(f"ratio one process / {args.workers} workers: {serial / parallel:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
