"""Every scheduled job, installed by django-crontab's own `crontab add` and run exactly as cron
runs it: `env -i HOME=… PATH=/usr/bin:/bin LANG=C sh -c '<line>'` from $HOME — no virtualenv
activated, no project folder as working directory, no DATABASE_URL unless the line brings it.

Twice: with the embedded PostgreSQL default in a fresh copy (the first job creates the server,
the database and the schema), and with DATABASE_URL supplied through CRONTAB_COMMAND_PREFIX
(an environment file sourced by every line, as docs/deploy.md shows).
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys

import psycopg
import pytest

from drains import schedule
from tests.support.db import ROOT, database_url
from tests.support.fresh_copy import embedded_url, fresh_copy, user_env
from tests.support.gate_db import fresh_database

pytestmark = pytest.mark.slow

RECORDER = """#!/bin/sh
# crontab(1) stand-in: `-l` lists the recorded table, `crontab FILE` records FILE.
store="$(dirname "$0")/crontab.txt"
if [ "$1" = "-l" ]; then [ -f "$store" ] && cat "$store"; exit 0; fi
cp "$1" "$store"
"""
COMMENT = " # django-cronjobs for config"


def scheduled() -> list[tuple[str, str]]:
    """(its log's name, the run row's name) of every scheduled job, as the drains and jobs declare
    them; the court fetch first, so that the drains after it have decisions to work on."""
    jobs = sorted(schedule.scheduled_jobs(), key=lambda job: job.name != "fetch_decisions")
    return [(schedule.cron_log_name([job.name, *job.args]).removesuffix(".log"),
             schedule.run_name(job)) for job in jobs]


def install(copy, tmp_path, **extra):
    recorder = tmp_path / "bin" / "crontab"
    recorder.parent.mkdir()
    recorder.write_text(RECORDER)
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    env = user_env(PATH=f"{recorder.parent}{os.pathsep}{os.environ['PATH']}", **extra)
    done = subprocess.run(
        [sys.executable, "manage.py", "crontab", "add"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [
        line for line in (recorder.parent / "crontab.txt").read_text().splitlines()
        if line.endswith(COMMENT)
    ]
    assert len(lines) == len(scheduled()), lines
    return lines


def job_of(line: str, copy) -> tuple[str, str]:
    """(job name, the command cron hands to sh) of one installed line."""
    command = line.split(None, 5)[5][: -len(COMMENT)]
    log = shlex.split(command.split(">>", 1)[1])[0]
    name = log.rsplit("/", 1)[1].removesuffix(".log")
    assert log == str(copy / "var" / "log" / f"{name}.log"), line
    return name, command


def run_as_cron(command: str, home) -> None:
    subprocess.run(
        ["env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin", "LANG=C", "/bin/sh", "-c", command],
        cwd=home, timeout=300, check=True,
    )


def check_every_job(copy, lines, home, url_of) -> None:
    inbox = copy / "var" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "halacha" / "samples" / "decisions-en.jsonl", inbox)
    jobs = dict(job_of(line, copy) for line in lines)
    assert sorted(jobs) == sorted(name for name, _ in scheduled())
    for name, _ in scheduled():
        run_as_cron(jobs[name], home)
        log = (copy / "var" / "log" / f"{name}.log").read_text()
        assert "Traceback" not in log and "Failed to complete" not in log, f"{name}:\n{log}"

    with psycopg.connect(url_of()) as conn:
        runs = conn.execute("SELECT drain, status, trigger, items_done FROM drains_drainrun").fetchall()
        decisions = conn.execute("SELECT count(*) FROM halacha_courtdecision").fetchone()[0]
    by_name = {drain: (status, trigger, done) for drain, status, trigger, done in runs}
    assert len(runs) == len(scheduled()), runs
    for name, run_name in scheduled():
        status, trigger, _ = by_name[run_name]
        assert (status, trigger) == ("succeeded", "cron"), (name, runs)
    assert decisions > 0  # the fetch imported the inbox file
    assert by_name["halacha"][2] == decisions  # and the halacha drain worked through it
    assert (inbox / "imported" / "decisions-en.jsonl").exists()


def test_every_installed_job_runs_in_crons_environment_on_the_embedded_default(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with fresh_copy("cron-embedded") as copy:
        lines = install(copy, tmp_path)
        assert not (copy / "var" / "pgdata").exists()  # the first job starts everything
        check_every_job(copy, lines, home, lambda: embedded_url(copy, "drains"))


def test_every_installed_job_runs_in_crons_environment_with_database_url_from_the_prefix(
    tmp_path, django_db_blocker
):
    home = tmp_path / "home"
    home.mkdir()
    with django_db_blocker.unblock(), fresh_database("cron") as name:
        url = database_url(name)
        env_file = tmp_path / "drains.env"
        env_file.write_text(f"DATABASE_URL={shlex.quote(url)}\n")
        prefix = f"set -a; . {shlex.quote(str(env_file))}; set +a;"
        with fresh_copy("cron-url") as copy:
            lines = install(copy, tmp_path, CRONTAB_COMMAND_PREFIX=prefix)
            assert all(prefix in line for line in lines)
            check_every_job(copy, lines, home, lambda: url)
            assert not (copy / "var" / "pgdata").exists()  # the URL's server, not an embedded one
