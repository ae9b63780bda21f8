"""``manage.py import_decisions PATH...``: load court decisions from JSONL files or folders."""

from __future__ import annotations

import time
from argparse import RawDescriptionHelpFormatter

from django.core.management.base import CommandError, DjangoHelpFormatter

from drains import validate
from drains.schema import ensure_schema
from drains.wording import plural
from halacha.importer import RECORD_HELP, ImportPathError, ImportReport, import_paths, jsonl_files

MAX_COUNT = 1_000_000_000


class _HelpFormatter(DjangoHelpFormatter, RawDescriptionHelpFormatter):
    """Django's argument order, with the record format printed as written."""


class Command(validate.CheckedCommand):
    help = (
        "Import court decisions from JSONL files (one decision per line) or folders of them.\n"
        "Not scheduled by cron: run it by hand (`make run` imports halacha/samples); the\n"
        "court-fetch cron job (fetch_decisions) feeds its downloads through the same importer.\n"
        "Idempotent: records are upserted by external_id. Bad lines are reported with their\n"
        "line numbers and skipped; the good ones are imported. Exit status 1 if any line\n"
        "was bad.\n\n" + RECORD_HELP
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs["formatter_class"] = _HelpFormatter
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument(
            "paths",
            nargs="+",
            metavar="PATH",
            type=validate.existing_path("any"),
            help="A .jsonl file, or a folder whose *.jsonl files (recursively) are imported.",
        )
        parser.add_argument(
            "--progress-every",
            type=validate.whole_number(0, MAX_COUNT),
            default=1000,
            metavar="N",
            help="Print a progress line every N records (default 1000; 0 turns it off).",
        )
        parser.add_argument(
            "--max-errors-shown",
            type=validate.whole_number(0, MAX_COUNT),
            default=50,
            metavar="N",
            help="Print at most N bad lines (default 50); the summary counts them all.",
        )

    def handle(self, *args, paths, progress_every, max_errors_shown, **options):
        try:
            files = jsonl_files(paths)  # a folder without *.jsonl is refused before any work
        except ImportPathError as exc:
            raise validate.BadInput(str(exc)) from None
        ensure_schema()
        started = time.monotonic()

        def progress(report: ImportReport, source: str) -> None:
            rate = report.lines / max(time.monotonic() - started, 1e-6)
            self.stdout.write(
                f"... {plural(report.lines, 'record')} ({rate:.0f}/s) so far: {report.summary()} [{source}]"
            )

        try:
            report = import_paths(
                files,
                progress=progress if progress_every else None,
                progress_every=progress_every or 1000,
            )
        except ImportPathError as exc:
            raise validate.BadInput(str(exc)) from None

        for source, line, message in report.errors[:max_errors_shown]:
            self.stderr.write(f"{source}:{line}: {message}")
        hidden = len(report.errors) - max_errors_shown
        if hidden > 0:
            self.stderr.write(f"... and {hidden} more bad lines")
        self.stdout.write(
            f"Imported {plural(report.files, 'file')}, {plural(report.lines, 'record')}: "
            f"{report.summary()}."
        )
        if report.bad:
            raise CommandError(
                f"{report.bad} bad line(s) were skipped (listed above); fix them and import "
                "again - the good records are in and will show as unchanged."
            )
