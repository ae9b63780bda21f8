"""What every cron job pays before it does anything: a Python process that sets Django up
(`django.setup()`, as `manage.py <job>` does), against the same set-up plus the schema
machinery it imported at start-up before (operations.openapi, hence drf-spectacular's plumbing,
now imported by the URL conf only), measured alternately in one run.

    .venv/bin/python bench/job_start.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOW = "import django; django.setup()"
BEFORE = NOW + "; import operations.openapi"


def start(code: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process running ``code``."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="processes of each kind (20)")
    args = parser.parse_args()
    start(NOW)  # warm the file cache and the bytecode
    now, before = [], []
    for n in range(args.rounds):
        now.append(start(NOW))
        before.append(start(BEFORE))
        if (n + 1) % 5 == 0:
            print(f"  {n + 1}/{args.rounds} rounds", flush=True)
    for what, i in (("wall", 0), ("CPU", 1)):
        a = statistics.median(s[i] for s in now)
        b = statistics.median(s[i] for s in before)
        print(f"job start, {what}: now {a * 1000:.0f} ms, before {b * 1000:.0f} ms "
              f"(ratio now / before {a / b:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
