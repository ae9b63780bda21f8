"""`run_scheduler`: the same CRONJOBS in the foreground — each job at its minute, a subprocess
per run, never two copies of one job, a clean stop on Ctrl-C.

The schedule is shortened through the same code path: a settings module of the test's own
replaces CRONJOBS with three probe commands, and ``--time-scale 240`` makes a scheduled minute
last a quarter of a second (``--start-at`` pins where the clock begins).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from tests.support.db import ROOT, child_env, manage

SCALE = 240
START_AT = "2026-03-02T09:59:50+02:00"

PROBE = """
import os, signal, sys, time
from django.core.management.base import BaseCommand

NAME = {name!r}
SLEEP = {sleep!r}


class Command(BaseCommand):
    help = "Test probe: records its start and end; sleeps SLEEP seconds."
    requires_system_checks = []

    def add_arguments(self, parser):  # as every job of ours takes them (drains/trigger.py)
        parser.add_argument("--trigger")
        parser.add_argument("--scheduled-for", default="-")

    def handle(self, *args, **options):
        log = os.environ["PROBE_LOG"]

        def record(what):
            with open(log, "a") as f:
                f.write(f"{{what}} {{NAME}} {{os.getpid()}} {{time.time():.3f}} "
                        f"{{options['scheduled_for']}}\\n")

        def on_term(signum, frame):
            record("term")
            sys.exit(0)

        signal.signal(signal.SIGTERM, on_term)
        record("start")
        time.sleep(SLEEP)
        record("end")
"""

SETTINGS = """
from config.settings import *  # noqa

INSTALLED_APPS = [*INSTALLED_APPS, "schedprobe"]
CALL = "django.core.management.call_command"
CRONJOBS = [
    ("*/8 * * * *", CALL, ["probe_tick"], {"trigger": "cron"}, ""),
    ("4-59/8 * * * *", CALL, ["probe_slow"], {"trigger": "cron"}, ""),
    ("10 10 * * *", CALL, ["probe_daily"], {"trigger": "cron"}, ""),
]
"""


@pytest.fixture
def probe_env(tmp_path):
    app = tmp_path / "schedprobe"
    (app / "management" / "commands").mkdir(parents=True)
    for init in (app, app / "management", app / "management" / "commands"):
        (init / "__init__.py").write_text("")
    # tick and daily are quick; slow outlives the 8 minutes (2 s) to its next fire
    for name, sleep in (("probe_tick", 0.0), ("probe_slow", 3.0), ("probe_daily", 0.0)):
        (app / "management" / "commands" / f"{name}.py").write_text(
            PROBE.format(name=name, sleep=sleep)
        )
    (tmp_path / "probe_settings.py").write_text(SETTINGS)
    log = tmp_path / "probe.log"
    log.touch()
    env = child_env(
        DJANGO_SETTINGS_MODULE="probe_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        PROBE_LOG=str(log),
        DRAINS_CRON_TZ="Asia/Jerusalem",  # a host whose cron runs in Israel time
    )
    return env, log


LINE = re.compile(
    r"(?P<what>start|skip|end) (?P<job>\w+)(?: pid (?P<pid>\d+))? for "
    r"(?P<fire>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
)


class Lines:
    """Collects a child's stderr line by line while it runs."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if line is None:
                return predicate(self.lines)
            self.lines.append(line)
        return True

    def drain(self, timeout: float = 10) -> None:
        self.wait_for(lambda lines: False, timeout)


def events(lines):
    return [m.groupdict() | {"line": line} for line in lines if (m := LINE.search(line))]


def probe_records(log: Path):
    rows = []
    for line in log.read_text().splitlines():
        what, name, pid, at, fire = line.split()
        rows.append({"what": what, "job": name, "pid": pid, "at": float(at), "fire": fire})
    return rows


def test_each_job_starts_at_its_minute_never_twice_at_once_and_stops_cleanly(probe_env):
    env, log = probe_env
    scheduler = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "run_scheduler",
            "--time-scale",
            str(SCALE),
            "--start-at",
            START_AT,
            "--grace",
            "10",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = Lines(scheduler.stderr)
    try:
        # run through 10:24 (6 real seconds), then until a slow run is in its sleep
        assert out.wait_for(
            lambda lines: any(
                e["job"] == "probe_tick" and e["fire"].endswith("10:24:00") for e in events(lines)
            ),
            timeout=60,
        ), "\n".join(out.lines)

        def slow_is_sleeping(lines):
            started = {
                e["pid"] for e in events(lines) if e["what"] == "start" and e["job"] == "probe_slow"
            }
            ended = {e["pid"] for e in events(lines) if e["what"] == "end"}
            recorded = {r["pid"] for r in probe_records(log) if r["what"] == "start"}
            return bool((started - ended) & recorded)

        assert out.wait_for(slow_is_sleeping, timeout=30), "\n".join(out.lines)
        scheduler.send_signal(signal.SIGINT)
        assert scheduler.wait(timeout=30) == 0
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
    out.drain()
    scheduler.stderr.close()
    lines = out.lines
    text = "\n".join(lines)
    assert "drains.W001" not in text and "drains.E" not in text  # the probe schedule is clean
    found = events(lines)

    # 1. every fire of every job is accounted for, at exactly its cron minutes, and no other
    fires = {}
    for e in found:
        if e["what"] in ("start", "skip"):
            fires.setdefault(e["job"], []).append(e["fire"][11:16])
    assert fires["probe_tick"][:4] == ["10:00", "10:08", "10:16", "10:24"]
    assert all(int(m[3:]) % 8 == 0 for m in fires["probe_tick"])
    assert fires["probe_slow"][:3] == ["10:04", "10:12", "10:20"]
    assert all(int(m[3:]) % 8 == 4 for m in fires["probe_slow"])
    assert fires["probe_daily"] == ["10:10"]

    # 2. each start happens within its minute on the scheduler's clock
    for line in lines:
        if m := re.search(r"start \w+ pid \d+ for (\S+ \S+) \S+ at (\S+ \S+)", line):
            fire = datetime.fromisoformat(m[1])
            at = datetime.fromisoformat(m[2])
            assert 0 <= (at - fire).total_seconds() < 60, line

    # 3. never two copies: slow outlives its 8-minute period, so its next fire is skipped...
    assert any(e["what"] == "skip" and e["job"] == "probe_slow" for e in found), text
    # ...and by the probes' own records no two runs of one job ever overlap
    records = probe_records(log)
    for job in ("probe_tick", "probe_slow", "probe_daily"):
        spans = {}
        for r in records:
            if r["job"] == job:
                spans.setdefault(r["pid"], []).append(r["at"])
        intervals = sorted((min(times), max(times)) for times in spans.values())
        assert all(nxt[0] >= cur[1] for cur, nxt in pairwise(intervals)), (job, intervals)

    # 4. each run was told which fire it serves, and that is the fire the scheduler logged
    started = {e["pid"]: e["fire"] for e in found if e["what"] == "start"}
    for r in records:
        if r["what"] == "start":
            assert (
                datetime.fromisoformat(r["fire"]).strftime("%Y-%m-%d %H:%M:%S") == started[r["pid"]]
            )

    # 5. Ctrl-C: the sleeping slow run got SIGTERM, finished, and was logged; nothing is left
    # (a tick that happened to be starting up at that moment gets the same SIGTERM)
    terminated = [r for r in records if r["what"] == "term"]
    slow = [r for r in terminated if r["job"] == "probe_slow"]
    assert len(slow) == 1, terminated
    pid = slow[0]["pid"]
    stopping = next(line for line in lines if "stopping: SIGTERM to" in line)
    for r in terminated:
        assert f"{r['job']} (pid {r['pid']})" in stopping
    assert re.search(rf"end probe_slow pid {pid} for .*: ok", text)
    assert lines[-1].endswith("scheduler stopped")
    for started_pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(int(started_pid), 0)


def test_run_scheduler_refuses_a_colliding_schedule(probe_env, tmp_path):
    env, _ = probe_env
    (tmp_path / "probe_settings.py").write_text(
        SETTINGS + "\nCRONJOBS.append(('*/4 * * * *', CALL, ['probe_daily2'], {}, ''))\n"
    )
    result = manage("run_scheduler", env=env, timeout=60)
    assert result.returncode == 1
    assert "probe_tick and probe_daily2 both fire at Mon 00:00" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--time-scale", "0"], "--time-scale: '0' must be at least 0.001"),
        (["--start-at", "2026-03-02T10:00:00"], "has no time zone; add a UTC offset"),
        (["--start-at", "tomorrow"], "is not a date and time; give ISO 8601 with a UTC offset"),
        (["--start-at", "9999-12-31T23:59:59-15:00"], "is at the edge of the calendar"),
    ],
)
def test_bad_options_are_user_errors_without_a_traceback(args, message):
    result = manage("run_scheduler", *args, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_names_the_command_and_every_option():
    result = manage("run_scheduler", "--help", timeout=60)
    assert result.returncode == 0
    assert "replaces cron" in result.stdout
    for option in ("--grace", "--time-scale", "--start-at"):
        assert option in result.stdout


def test_the_fire_time_is_passed_to_a_job_of_ours_and_not_to_a_hosts_own_command(monkeypatch):
    # A job that takes --trigger takes --scheduled-for (drains/trigger.py); a command of a host's
    # own (CRONJOBS + [...], e.g. clearsessions) is started as cron starts it.
    from drains import scheduler
    from drains.schedule import ScheduledJob

    started = []
    monkeypatch.setattr(scheduler.subprocess, "Popen", lambda argv, **kw: started.append(argv[2:]))
    fire = datetime(2026, 12, 3, 7, 12, tzinfo=UTC)
    scheduler.spawn_job(ScheduledJob("send_digest", "12 7 * * *", (), {"trigger": "cron"}, ""), fire)
    scheduler.spawn_job(ScheduledJob("clearsessions", "30 3 * * *", (), {}, ""), fire)
    assert started == [["send_digest", "--trigger=cron", "--scheduled-for=2026-12-03T07:12:00+00:00"],
                       ["clearsessions"]]
