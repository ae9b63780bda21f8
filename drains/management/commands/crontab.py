"""`manage.py crontab add|show|remove|run`: django-crontab's command, made safe to install.

The installed lines append each job's output to ``DRAINS_LOG_DIR/<job>.log``. cron runs the
shell redirection before the job, so into a missing folder the job would never start; ``add``
therefore creates the folder first. django-crontab ignores the crontab program's exit status,
so ``add`` and ``remove`` check first that ``CRONTAB_EXECUTABLE`` (``crontab``) exists and afterwards that the
table reads back as meant; ``run`` refuses a hash that is not one of ``CRONJOBS``. ``add`` ends
by naming the zone cron reads the times in (the host's, or ``DRAINS_CRON_TZ``) and when the
daily job fires in the operator's zone, as the page and ``manage.py schedule`` show it.
Everything else is django-crontab's own behaviour.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from django.conf import settings
from django_crontab.crontab import Crontab
from django_crontab.management.commands.crontab import Command as CrontabCommand

from drains import schedule, validate
from drains.clock import format_local


def job_hashes() -> list[str]:
    """The hash django-crontab gives each job of CRONJOBS (what `crontab run` takes)."""
    crontab = Crontab()
    return [crontab._Crontab__hash_job(job) for job in crontab.settings.CRONJOBS]


def _crontab_program() -> list[str]:
    words = shlex.split(settings.CRONTAB_EXECUTABLE or "")
    if not words or shutil.which(words[0]) is None:
        raise validate.BadInput(
            f"{validate.shown(settings.CRONTAB_EXECUTABLE)} is not a program found on PATH; "
            "install cron (its crontab program), or put the folder that holds it on PATH."
        )
    return words


def _zone_line() -> str:
    """Which zone cron reads the installed times in, and what that means in the operator's."""
    jobs = schedule.scheduled_jobs()
    fires = ", ".join(
        f"{job.label} next {format_local(schedule.next_fire_times(job.expression)[0])}"
        for job in jobs
        if schedule.fires_daily(job.expression)
    )
    return (
        f"cron reads these times in {settings.DRAINS_CRON_TZ} (this host's zone unless "
        f"DRAINS_CRON_TZ says otherwise){': ' + fires if fires else ''}."
    )


class _Crontab(Crontab):
    """django-crontab's table, read and written through ``subprocess`` so that a crontab
    program that fails says so (django-crontab's ``os.popen``/``os.system`` ignore it)."""

    def __init__(self, program: list[str], **options):
        super().__init__(**options)
        self.program = program

    def read(self):
        listed = subprocess.run([*self.program, "-l"], capture_output=True, text=True, timeout=60)
        # `crontab -l` exits 1 with "no crontab for USER" when the user has none yet.
        self.crontab_lines = listed.stdout.splitlines(keepends=True) if listed.returncode == 0 else []

    def write(self):
        with tempfile.NamedTemporaryFile("w", suffix=".crontab", delete=False) as table:
            table.writelines(self.crontab_lines)
        try:
            written = subprocess.run(
                [*self.program, table.name], capture_output=True, text=True, timeout=60
            )
        finally:
            os.unlink(table.name)
        if written.returncode != 0:
            reason = (written.stderr.strip().splitlines() or [f"exit {written.returncode}"])[0]
            raise validate.BadInput(
                f"crontab: {shlex.join(self.program)} refused the table ({reason}); nothing "
                "was installed. Check that this user may use cron (cron.allow)."
            )

    def installed(self) -> str:
        self.read()
        return "".join(self.crontab_lines)


class Command(validate.CheckedCommand, CrontabCommand):
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
        subcommand, jobhash = options["subcommand"], options["jobhash"]
        if subcommand == "run":
            if jobhash is None:
                raise validate.BadInput(
                    "jobhash: `crontab run` needs a job's hash; `manage.py crontab show` lists "
                    "them (cron passes it on each installed line)."
                )
            if jobhash not in job_hashes():
                raise validate.BadInput(
                    f"jobhash: {validate.shown(jobhash)} is not the hash of a job in CRONJOBS; "
                    "`manage.py crontab show` lists them (run `crontab add` again after a "
                    "change of the schedule)."
                )
            return super().handle(*args, **options)
        if jobhash is not None:
            raise validate.BadInput(f"jobhash: only `crontab run` takes a hash, not {subcommand}.")
        program = _crontab_program()
        if subcommand == "show":
            with _Crontab(program, readonly=True, **options) as crontab:
                crontab.show_jobs()
            return
        if subcommand == "add":
            Path(settings.DRAINS_LOG_DIR).mkdir(parents=True, exist_ok=True)
        with _Crontab(program, **options) as crontab:
            crontab.remove_jobs()
            if subcommand == "add":
                crontab.add_jobs()
        table = _Crontab(program).installed()
        hashes = job_hashes()
        missing = [h for h in hashes if f"crontab run {h}" not in table]
        if subcommand == "add" and missing:
            raise validate.BadInput(
                f"crontab add: the table that {shlex.join(program)} -l lists lacks "
                f"{len(missing)} of the {len(hashes)} jobs: the install did not take. Check "
                "that this user may use cron (cron.allow) and try again."
            )
        if subcommand == "add":
            self.stdout.write(_zone_line())
        if subcommand == "remove" and len(missing) < len(hashes):
            raise validate.BadInput(
                f"crontab remove: {shlex.join(program)} -l still lists jobs of this project; "
                "the table was not written."
            )
