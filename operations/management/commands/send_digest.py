"""`manage.py send_digest`: the daily digest email (cron, at its slot: manage.py schedule)."""

from __future__ import annotations

from drains.jobs import JobCommand
from operations.digest import send_digest


class Command(JobCommand):
    job_name = "send_digest"
    help = (
        "Email the last 24 hours per drain (items done, what each drain made, bursts, backoffs, "
        "failures) to DIGEST_RECIPIENTS through Django's email backend (console unless "
        "EMAIL_HOST is set). Cron runs it daily at its slot (manage.py schedule); the run is "
        "recorded as a job run."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print the digest instead of sending it (the run is still recorded).",
        )

    def handle(self, *args, trigger: str, dry_run: bool, **options):
        result = self.run_job(trigger, lambda run: send_digest(dry_run=dry_run))
        if result is None:  # another host has the slot
            return
        if dry_run or not result.recipients:
            if not result.recipients:
                self.stderr.write(
                    "DIGEST_RECIPIENTS is empty: the digest was not emailed. It reads:"
                )
            self.stdout.write(f"Subject: {result.subject}\n\n{result.body}")
        else:
            self.stdout.write(f"Digest sent to {', '.join(result.recipients)}: {result.subject}")
