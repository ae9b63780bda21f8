"""`manage.py fetch_decisions`: the court fetch (cron, hourly at :17)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from drains.models import Trigger
from drains.runs import job_run, record_checkpoint
from drains.schema_gate import ensure_schema
from drains.slots import SlotTaken
from drains.trigger import add_trigger_argument
from halacha.fetch import FetchError, FetchReport, fetch_decisions

JOB = "fetch_decisions"
MAX_ERRORS_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Import new court decisions from the inbox folder (FETCH_INBOX_DIR: *.json / *.jsonl, "
        "moved to imported/ or failed/ once read) and the feed (FETCH_FEED_URL, a JSON array "
        "or JSONL), idempotent by external_id; bad records are reported and skipped. Cron runs "
        "it hourly at :17; a feed error fails the recorded run and exits 1."
    )

    def add_arguments(self, parser):
        add_trigger_argument(parser, default=Trigger.MANUAL)

    def handle(self, *args, trigger: str, **options):
        ensure_schema()
        try:
            with job_run(name=JOB, trigger=trigger) as run:
                try:
                    report = fetch_decisions()
                except FetchError as exc:
                    # What the inbox brought in counts even when the feed then fails.
                    _checkpoint(run, exc.report)
                    raise
                _checkpoint(run, report)
        except FetchError as exc:
            # Recorded on the run as failed already; say it plainly and exit non-zero.
            raise CommandError(str(exc)) from None
        except SlotTaken as taken:
            self.stdout.write(f"{JOB}: {taken}")
            return
        for moved in report.files:
            self.stdout.write(
                f"{moved.name}: "
                + (moved.report.summary() if moved.report else f"FAILED ({moved.error})")
                + f" -> {moved.destination}"
            )
        if report.feed is not None:
            self.stdout.write(f"feed: {report.feed.summary()}")
        for source, line, message in report.total.errors[:MAX_ERRORS_SHOWN]:
            self.stderr.write(f"{source}:{line}: {message}")
        hidden = len(report.total.errors) - MAX_ERRORS_SHOWN
        if hidden > 0:
            self.stderr.write(f"... and {hidden} more bad {'record' if hidden == 1 else 'records'}")
        self.stdout.write(f"Fetched: {report.summary()}.")


def _checkpoint(run, report: FetchReport | None) -> None:
    """Record on the run: records added or updated (done), bad records and unreadable files."""
    if report is None:
        return
    unreadable = sum(1 for moved in report.files if moved.report is None)
    record_checkpoint(
        run=run,
        done=report.total.added + report.total.updated,
        failed=report.total.bad + unreadable,
    )
