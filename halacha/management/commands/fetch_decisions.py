"""`manage.py fetch_decisions`: the court fetch (cron, at its slot: manage.py schedule)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from drains import validate
from drains.jobs import JobCommand
from drains.models import DrainRun
from drains.runs import record_checkpoint
from halacha.fetch import FetchError, FetchReport, fetch_decisions

MAX_ERRORS_SHOWN = 50


class Command(JobCommand):
    job_name = "fetch_decisions"
    help = (
        "Import new court decisions from the inbox folder (FETCH_INBOX_DIR: *.json / *.jsonl, "
        "moved to imported/ or failed/ once read) and the feed (FETCH_FEED_URL, a JSON array "
        "or JSONL), idempotent by external_id; bad records are reported (file and line, or feed "
        "position) and skipped. Cron runs it at its slot (manage.py schedule). Exit status 1 if any record was "
        "bad or a file failed, as import_decisions; a feed error (unreachable, HTTP error, not "
        "JSON) fails the recorded run and exits 1."
    )

    def handle(self, *args, trigger: str, **options):
        # The settings were checked at start-up (config/env.py); a host's own settings module
        # or a test may have set them since, so the door checks them again before any work.
        if settings.FETCH_FEED_URL:
            validate.check("FETCH_FEED_URL", settings.FETCH_FEED_URL, validate.http_url)
        validate.check("FETCH_INBOX_DIR", settings.FETCH_INBOX_DIR, validate.writable_folder)
        try:
            report = self.run_job(trigger, _fetch)
        except FetchError as exc:
            # Recorded on the run as failed already; say it plainly and exit non-zero.
            raise CommandError(str(exc)) from None
        if report is None:  # another host has the slot
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
        failed_files = sum(1 for moved in report.files if moved.report is None)
        if report.total.bad or failed_files:
            # The same rule as import_decisions: the good records are in, and the exit status
            # says that some were not. The run row has them as failed items.
            raise CommandError(
                f"{report.total.bad} bad record(s) skipped and {failed_files} file(s) moved to "
                "failed/ (listed above); fix them and drop them in the inbox again."
            )


def _fetch(run: DrainRun) -> FetchReport:
    try:
        report = fetch_decisions()
    except FetchError as exc:
        # What the inbox brought in counts even when the feed then fails.
        _checkpoint(run, exc.report)
        raise
    _checkpoint(run, report)
    return report


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
