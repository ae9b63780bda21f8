"""`manage.py schedule`: the one schedule as a table — job, expression, next fires, last run."""

from __future__ import annotations

import psycopg
from django.core.management.base import CommandError
from django.db import DatabaseError

from drains import schedule, validate
from drains.clock import format_local
from drains.failures import reason_line

MAX_COUNT = 100


class Command(validate.CheckedCommand):
    help = (
        "Print the schedule (settings.CRONJOBS): each job, its cron expression, its next fire "
        "times in the operator zone (Asia/Jerusalem) and its last run with status. Run it by "
        "hand; cron never runs it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--count",
            type=validate.whole_number(1, MAX_COUNT),
            default=3,
            help=f"How many upcoming fire times to show per job, 1 to {MAX_COUNT} (default 3).",
        )

    def handle(self, *args, count: int, **options):
        try:
            rows = schedule.schedule_rows(count=count)
        except DatabaseError as exc:  # the last runs are read from the database
            if not isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
                raise
            raise CommandError(
                "The database has no drains tables yet, so no run can be read; run manage.py "
                "migrate first (this command applies no migration)."
            ) from None
        table = [("job", "expression", f"next {count} (Asia/Jerusalem)", "last run", "status")]
        for row in rows:
            nexts = ", ".join(format_local(t) for t in row.next_fires)
            run = row.last_run
            if run is None:
                last, status = "never", "-"
            else:
                last = format_local(run.started_at)
                status = run.status
                if run.error:
                    status += ": " + reason_line(error=run.error, error_kind=run.error_kind)
            table.append((row.job.label, row.job.expression, nexts, last, status))
        widths = [max(len(r[i]) for r in table) for i in range(4)]
        for i, r in enumerate(table):
            cells = [r[c].ljust(widths[c]) for c in range(4)] + [r[4]]
            self.stdout.write("  ".join(cells).rstrip())
            if i == 0:
                self.stdout.write("  ".join("-" * w for w in [*widths, len(r[4])]))
