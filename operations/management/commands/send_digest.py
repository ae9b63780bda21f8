"""`manage.py send_digest`: the daily digest email (cron, 07:12)."""

from __future__ import annotations

from drains.jobs import SlotTaken, job_run
from drains.models import Trigger
from drains.schema import ensure_schema
from drains.trigger import add_trigger_argument
from drains.validate import CheckedCommand
from operations.digest import send_digest

JOB = "send_digest"


class Command(CheckedCommand):
    help = (
        "Email the last 24 hours per drain (items done, halachot extracted, bursts, backoffs, "
        "failures) to DIGEST_RECIPIENTS through Django's email backend (console unless "
        "EMAIL_HOST is set). Cron runs it daily at 07:12; the run is recorded as a job run."
    )

    def add_arguments(self, parser):
        add_trigger_argument(parser, default=Trigger.MANUAL)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print the digest instead of sending it (the run is still recorded).",
        )

    def handle(self, *args, trigger: str, dry_run: bool, **options):
        ensure_schema()
        try:
            with job_run(name=JOB, trigger=trigger):
                result = send_digest(dry_run=dry_run)
        except SlotTaken as taken:
            self.stdout.write(f"{JOB}: {taken}")
            return
        if dry_run or not result.recipients:
            if not result.recipients:
                self.stderr.write(
                    "DIGEST_RECIPIENTS is empty: the digest was not emailed. It reads:"
                )
            self.stdout.write(f"Subject: {result.subject}\n\n{result.body}")
        else:
            self.stdout.write(f"Digest sent to {', '.join(result.recipients)}: {result.subject}")
