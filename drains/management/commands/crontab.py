"""`manage.py crontab add|show|remove|run`: django-crontab's command, made safe to install.

The installed lines append each job's output to ``DRAINS_LOG_DIR/<job>.log``. cron runs the
shell redirection before the job, so into a missing folder the job would never start; ``add``
therefore creates the folder first. Everything else is django-crontab's own behaviour.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django_crontab.management.commands.crontab import Command as CrontabCommand


class Command(CrontabCommand):
    help = (
        "Install (add), list (show) or uninstall (remove) settings.CRONJOBS in this user's "
        "crontab; cron itself calls `crontab run HASH` for each job at its time."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "subcommand",
            choices=["add", "show", "remove", "run"],
            help="add: install or refresh the jobs; show: list them; remove: uninstall them; "
            "run: run one job by its hash (what cron does).",
        )
        parser.add_argument("jobhash", nargs="?", help="The job's hash, for `run` only.")

    def handle(self, *args, **options):
        if options["subcommand"] == "add":
            Path(settings.DRAINS_LOG_DIR).mkdir(parents=True, exist_ok=True)
        return super().handle(*args, **options)
