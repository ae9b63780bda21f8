"""What every cron job pays before it does its work: a real job (``manage.py supervise_drains``,
one supervisor tick, on a scratch database) running the system checks of ``JOB_CHECKS`` (now),
against the same job running every system check (before: the admin's and the URL conf's checks
imported the URL conf, the API and drf-spectacular), measured alternately in one run.

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

from _harness import ROOT, scratch_database, server_url

JOB = ("import sys; from django.core.management import execute_from_command_line; {patch}"
       "execute_from_command_line(['manage.py', 'supervise_drains'])")
NOW = JOB.format(patch="")
BEFORE = JOB.format(patch="import django; django.setup(); from drains.jobs import JobCommand; "
                          "JobCommand.requires_system_checks = '__all__'; ")
ENV: dict[str, str] = {}


def start(code: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process running ``code``."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="processes of each kind (20)")
    args = parser.parse_args()
    with scratch_database("bench_job_start") as database:
        ENV.update(os.environ, DJANGO_SETTINGS_MODULE="config.settings",
                   DATABASE_URL=server_url(database))
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=ENV,
                       check=True)
        return measure(args.rounds)


def measure(rounds: int) -> int:
    start(NOW)  # warm the file cache and the bytecode
    now, before = [], []
    for n in range(rounds):
        now.append(start(NOW))
        before.append(start(BEFORE))
        if (n + 1) % 5 == 0:
            print(f"  {n + 1}/{rounds} rounds", flush=True)
    for what, i in (("wall", 0), ("CPU", 1)):
        a = statistics.median(s[i] for s in now)
        b = statistics.median(s[i] for s in before)
        print(f"job start, {what}: now {a * 1000:.0f} ms, before {b * 1000:.0f} ms "
              f"(ratio now / before {a / b:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
