"""`manage.py run_scheduler`: run the one schedule (CRONJOBS) in the foreground, without cron."""

from __future__ import annotations

import signal

from django.core.management.base import CommandError

from drains import schedule, validate
from drains.scheduler import Clock, Scheduler

MAX_GRACE_SECONDS = 3600.0
MAX_TIME_SCALE = 3600.0


class Command(validate.CheckedCommand):
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
            type=validate.decimal_number(0, MAX_GRACE_SECONDS, "seconds"),
            default=30.0,
            help="Seconds a running job gets after SIGTERM before it is killed, 0 to "
            f"{MAX_GRACE_SECONDS:g} (default 30).",
        )
        parser.add_argument(
            "--time-scale",
            type=validate.decimal_number(0.001, MAX_TIME_SCALE),
            default=1.0,
            help="Run the schedule this many times faster than real time, e.g. 60 makes a "
            f"scheduled minute last one second (demos and tests; 0.001 to {MAX_TIME_SCALE:g}; "
            "default 1).",
        )
        parser.add_argument(
            "--start-at",
            type=validate.aware_datetime,
            help="Start the scheduler's clock at this ISO 8601 time with a UTC offset instead "
            "of now (demos and tests, usually with --time-scale).",
        )

    def handle(self, *args, grace: float, time_scale: float, start_at, **options):
        start = start_at
        jobs = schedule.scheduled_jobs()
        if not jobs:
            raise CommandError("settings.CRONJOBS is empty: there is nothing to run.")
        scheduler = Scheduler(
            jobs=jobs, clock=Clock(scale=time_scale, start=start), grace_seconds=grace
        )

        def request_stop(signum, frame):
            if scheduler.stop_requested.is_set():
                # A second Ctrl-C: stop waiting for the jobs' grace period.
                scheduler.grace_seconds = 0
            scheduler.stop()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        scheduler.run()
