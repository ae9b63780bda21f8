"""Installing the schedule into a crontab: `manage.py crontab add` against a `crontab`
executable of the test's own (first on PATH), and every job line checked."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from drains.models import DrainRun, RunStatus
from tests.support.db import ROOT, child_env, manage

FAKE_CRONTAB = """#!/bin/sh
# A crontab(1) stand-in: `-l` lists the stored table, `crontab FILE` replaces it.
if [ "$1" = "-l" ]; then
    if [ -f "$FAKE_CRONTAB_STORE" ]; then exec cat "$FAKE_CRONTAB_STORE"; fi
    echo "no crontab for $(id -un)" >&2
    exit 1
fi
echo "$@" >> "$FAKE_CRONTAB_STORE.calls"
cp "$1" "$FAKE_CRONTAB_STORE"
"""
COMMENT = "# django-cronjobs for config"
EXISTING = "MAILTO=ops@example.com\n30 2 * * * /usr/local/bin/backup --nightly\n"


@pytest.fixture
def crontab_env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "crontab"
    fake.write_text(FAKE_CRONTAB)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    store = tmp_path / "crontab.txt"
    store.write_text(EXISTING)  # the user's own lines must survive
    var = tmp_path / "var"
    env = child_env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_CRONTAB_STORE=str(store),
        DRAINS_VAR_DIR=str(var),
    )
    return env, store, var


def job_lines(store):
    return [line for line in store.read_text().splitlines() if line.endswith(COMMENT)]


def test_crontab_add_installs_every_job_line(crontab_env):
    env, store, var = crontab_env
    result = manage("crontab", "add", env=env)
    assert result.returncode == 0, result.stderr
    assert store.read_text().startswith(EXISTING)
    lines = job_lines(store)
    expected = [(job[0], job[2][0]) for job in settings.CRONJOBS]
    assert len(lines) == len(expected) == 5

    show = manage("crontab", "show", env=env)
    hashes = dict(re.findall(r"^(\w{32}) -> \('[^']*', '[^']*', \['(\w+)'\]", show.stdout, re.M))
    assert sorted(hashes.values()) == sorted(command for _, command in expected)

    for line, (expression, command) in zip(lines, expected, strict=True):
        # "<m h dom mon dow> <python> <manage.py> crontab run <hash> >> <log> 2>&1 # comment"
        assert line.startswith(expression + " "), line
        words = shlex.split(line[len(expression) : -len(COMMENT)])
        python, manage_py, crontab, run, job_hash, redirect, log, stderr = words
        assert (python, manage_py) == (sys.executable, str(ROOT / "manage.py"))
        assert (crontab, run) == ("crontab", "run")
        assert hashes[job_hash] == command
        assert (redirect, log, stderr) == (">>", str(var / "log" / f"{command}.log"), "2>&1")
    # the log folder exists, so cron's redirection cannot fail before the job starts
    assert (var / "log").is_dir()


def test_crontab_add_twice_keeps_one_line_per_job_and_remove_restores_the_table(crontab_env):
    env, store, _ = crontab_env
    assert manage("crontab", "add", env=env).returncode == 0
    first = job_lines(store)
    assert manage("crontab", "add", env=env).returncode == 0
    assert job_lines(store) == first
    assert manage("crontab", "remove", env=env).returncode == 0
    assert store.read_text() == EXISTING


def test_an_installed_line_runs_its_job_through_the_shell(crontab_env, transactional_db):
    """What cron does with the send_digest line: the job runs and writes its log file."""
    env, store, var = crontab_env
    env["DIGEST_RECIPIENTS"] = "ops@example.com"  # console backend: the mail lands in the log
    assert manage("crontab", "add", env=env).returncode == 0
    line = next(line for line in job_lines(store) if line.startswith("12 7 * * * "))
    command = line[len("12 7 * * * ") : -len(COMMENT)]
    subprocess.run(["/bin/sh", "-c", command], env=env, cwd="/", timeout=120, check=True)
    log = (var / "log" / "send_digest.log").read_text()
    assert "Subject: [drains] digest " in log, log
    assert "To: ops@example.com" in log
    run = DrainRun.objects.get(drain="send_digest")
    assert (run.status, run.trigger) == (RunStatus.SUCCEEDED, "cron")


@pytest.mark.parametrize("host_zone", ["UTC", "America/New_York"])
def test_on_a_host_in_another_zone_schedule_shows_when_cron_fires_the_daily_line(
    crontab_env, host_zone, transactional_db
):
    """cron reads `12 7 * * *` in the host's zone; `schedule` (and with it the page, the slots and
    run_scheduler, which read the same zone) must say that moment, in the operator's zone."""
    env, store, _ = crontab_env
    env.pop("DRAINS_CRON_TZ", None)  # the default: whatever zone this host runs in
    env["TZ"] = host_zone
    added = manage("crontab", "add", env=env)
    assert added.returncode == 0, added.stderr
    daily = next(line for line in job_lines(store) if "/send_digest.log" in line)
    minute, hour = (int(field) for field in daily.split()[:2])

    shown = manage("schedule", "--count", "2", env=env)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("send_digest "))
    fires = re.findall(r"\w{3} (\d{4}-\d\d-\d\d \d\d:\d\d) I[SD]T", row)
    assert len(fires) == 2, row
    for fire in fires:
        moment = datetime.fromisoformat(fire).replace(tzinfo=ZoneInfo("Asia/Jerusalem"))
        at_host = moment.astimezone(ZoneInfo(host_zone))
        assert (at_host.hour, at_host.minute) == (hour, minute), (row, at_host)
    # and `crontab add` said so
    assert f"cron reads these times in {host_zone} " in added.stdout, added.stdout


# --- refusals: one line, exit 2, nothing installed ---------------------------------------------


def test_crontab_add_without_a_crontab_program_is_one_line_and_exit_2(crontab_env, tmp_path):
    env, store, _ = crontab_env
    env["PATH"] = str(tmp_path / "no-programs")  # manage.py runs as sys.executable, found anyway
    result = manage("crontab", "add", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "BadInput: 'crontab' is not a program found on PATH; install cron (its crontab "
        "program), or put the folder that holds it on PATH."
    ]
    assert "adding cronjob" not in result.stdout
    assert store.read_text() == EXISTING


def test_crontab_add_whose_install_does_not_take_is_exit_2(crontab_env, tmp_path):
    env, store, _ = crontab_env
    ignoring = tmp_path / "bin" / "crontab"  # in place of the fixture's, first on PATH
    # lists the table, and "installs" by exiting 0 without writing anything
    ignoring.write_text('#!/bin/sh\n[ "$1" = "-l" ] && exec cat "$FAKE_CRONTAB_STORE"\nexit 0\n')
    ignoring.chmod(0o755)
    result = manage("crontab", "add", env=env)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "lacks 5 of the 5 jobs: the install did not take" in line
    assert store.read_text() == EXISTING


def test_crontab_add_whose_program_refuses_the_table_is_exit_2(crontab_env, tmp_path):
    env, store, _ = crontab_env
    refusing = tmp_path / "bin" / "crontab"  # in place of the fixture's, first on PATH
    refusing.write_text('#!/bin/sh\n[ "$1" = "-l" ] && exit 1\n'
                        'echo "You (drains) are not allowed to use this program" >&2\nexit 1\n')
    refusing.chmod(0o755)
    result = manage("crontab", "add", env=env)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "refused the table (You (drains) are not allowed to use this program)" in line


@pytest.mark.parametrize("args", [["run"], ["run", "0" * 32], ["show", "abc"]])
def test_crontab_run_without_a_known_hash_is_one_line_and_exit_2(crontab_env, args):
    env, _, _ = crontab_env
    result = manage("crontab", *args, env=env)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "RuntimeError" not in result.stderr
