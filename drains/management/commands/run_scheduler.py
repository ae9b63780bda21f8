"""`manage.py run_scheduler`: run the one schedule (CRONJOBS) in the foreground, without cron."""

from __future__ import annotations

import signal

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from drains import schedule


class Command(BaseCommand):
    help = (
        "Run settings.CRONJOBS in the foreground for hosts without cron (containers, "
        "development, `make run`): each job starts as its own `manage.py <command>` process at "
        "its cron time, never two copies of one job, one log line per start and end. Ctrl-C or "
        "SIGTERM stops it: running jobs get SIGTERM and --grace seconds to finish. Cron never "
        "runs this; it replaces cron."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace",
            type=float,
            default=30.0,
            help="Seconds a running job gets after SIGTERM before it is killed (default 30).",
        )
        parser.add_argument(
            "--time-scale",
            type=float,
            default=1.0,
            help="Run the schedule this many times faster than real time, e.g. 60 makes a "
            "scheduled minute last one second (demos and tests; default 1).",
        )
        parser.add_argument(
            "--start-at",
            help="Start the scheduler's clock at this ISO 8601 time with a UTC offset instead "
            "of now (demos and tests, usually with --time-scale).",
        )

    def handle(self, *args, grace: float, time_scale: float, start_at: str | None, **options):
        if time_scale <= 0:
            raise CommandError("--time-scale must be a positive number.")
        if grace < 0:
            raise CommandError("--grace must not be negative.")
        start = None
        if start_at:
            try:
                start = parse_datetime(start_at)
            except ValueError:
                start = None
            if start is None or start.tzinfo is None:
                raise CommandError(
                    f"--start-at {start_at!r} is not an ISO 8601 time with a UTC offset, "
                    "e.g. 2026-01-04T06:59:30+02:00."
                )
        jobs = schedule.scheduled_jobs()
        if not jobs:
            raise CommandError("settings.CRONJOBS is empty: there is nothing to run.")
        scheduler = schedule.Scheduler(
            jobs=jobs, clock=schedule.Clock(scale=time_scale, start=start), grace_seconds=grace
        )

        def request_stop(signum, frame):
            if scheduler.stop_requested.is_set():
                # A second Ctrl-C: stop waiting for the jobs' grace period.
                scheduler.grace_seconds = 0
            scheduler.stop()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        scheduler.run()
