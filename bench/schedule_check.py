"""What the schedule check costs every management command at start-up.

Django runs the system checks when a command starts, so every cron job pays for the collision
check. This measures the check as shipped (each expression expanded into its week of fire
minutes from croniter's parsed fields) against the baseline of stepping croniter through a whole
week for every job, on the shipped CRONJOBS, and prints both and their ratio.

    .venv/bin/python bench/schedule_check.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from croniter import croniter  # noqa: E402

from drains import schedule  # noqa: E402
from drains.checks import check_schedule  # noqa: E402


def stepped_week(expression: str) -> frozenset[int]:
    monday = datetime(2024, 1, 1, tzinfo=UTC)
    it = croniter(expression, monday - timedelta(seconds=1))
    minutes = set()
    while (moment := it.get_next(datetime)) < monday + timedelta(days=7):
        minutes.add(int((moment - monday).total_seconds()) // 60)
    return frozenset(minutes)


def baseline_check(jobs) -> int:
    weeks = [(job.name, stepped_week(job.expression)) for job in jobs]
    clashes = 0
    for i, (_, a) in enumerate(weeks):
        for _, b in weeks[i + 1 :]:
            clashes += bool(a & b)
            clashes += any(
                (m + 1) % schedule.WEEK_MINUTES in b or (m - 1) % schedule.WEEK_MINUTES in b
                for m in a
            )
    return clashes


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed repetitions (median shown)")
    args = parser.parse_args()
    jobs = schedule.scheduled_jobs()
    # same answer first: the fast expansion is the stepped week
    for job in jobs:
        assert schedule.week_minutes(job.expression) == stepped_week(job.expression), job.name
    assert check_schedule() == [] and baseline_check(jobs) == 0

    shipped = timed(check_schedule, args.repeat)
    baseline = timed(lambda: baseline_check(jobs), args.repeat)
    fires = sum(len(schedule.week_minutes(job.expression)) for job in jobs)
    print(f"jobs: {len(jobs)}, fire minutes per week: {fires}")
    print(
        f"check as shipped (field product):      {shipped * 1000:8.2f} ms (median of {args.repeat})"
    )
    print(
        f"baseline (croniter stepped a week):    {baseline * 1000:8.2f} ms (median of {args.repeat})"
    )
    print(f"ratio baseline / shipped:              {baseline / shipped:8.1f}x")


if __name__ == "__main__":
    main()
