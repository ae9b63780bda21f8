"""The foreground scheduler (``manage.py run_scheduler``): the one schedule
(``drains.schedule.scheduled_jobs``) run without cron, each job started as its own
``manage.py`` subprocess, exactly as cron would; never a job in-process.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from croniter import croniter
from django.conf import settings
from django.utils import timezone

from drains.clock import format_local
from drains.schedule import ScheduledJob, cron_tz
from drains.trigger import scheduled_for_args

logger = logging.getLogger("drains.scheduler")


class Clock:
    """The scheduler's notion of now. ``scale`` > 1 runs a schedule faster than real time
    (a demo, or a test that must see an hour of minutes in seconds); ``start`` pins where the
    clock begins. With neither, it is the wall clock."""

    def __init__(self, *, scale: float = 1.0, start: datetime | None = None):
        if scale <= 0:
            raise ValueError("the time scale must be positive")
        self.scale = scale
        self.virtual = scale != 1.0 or start is not None
        self._real0 = time.monotonic()
        self._start = start or timezone.now()

    def now(self) -> datetime:
        if not self.virtual:
            return timezone.now()
        return self._start + timedelta(seconds=(time.monotonic() - self._real0) * self.scale)

    def real_seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self.scale)


def job_argv(job: ScheduledJob) -> list[str]:
    """``manage.py`` arguments for a job: the command, its args, its kwargs as options."""
    argv = [job.name, *job.args]
    for key, value in job.kwargs.items():
        option = "--" + key.replace("_", "-")
        if value is True:
            argv.append(option)
        elif value is not False and value is not None:
            argv.append(f"{option}={value}")
    return argv


def spawn_job(job: ScheduledJob, fire: datetime) -> subprocess.Popen:
    """Start one job as ``manage.py <command>`` in a session of its own, so that a Ctrl-C in
    the terminal reaches the scheduler only and each job gets exactly one SIGTERM from it."""
    # A job that takes --trigger (drains/trigger.py) takes --scheduled-for too: the fire time it
    # serves; a command of a host's own that takes neither is started as cron starts it.
    told = scheduled_for_args(fire) if "trigger" in job.kwargs else []
    return subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *job_argv(job), *told],
        cwd=settings.BASE_DIR,
        start_new_session=True,
    )


@dataclass
class _Running:
    process: subprocess.Popen
    fire: datetime
    started: float  # time.monotonic()


@dataclass
class Scheduler:
    """Runs ``jobs`` at their cron times until stopped: each start a subprocess, never two
    copies of one job (a fire while the previous run is alive is skipped, and said so), a log
    line per start, skip and end. A missed fire (host asleep, scheduler stalled) runs once,
    not once per missed minute."""

    jobs: list[ScheduledJob]
    clock: Clock = field(default_factory=Clock)
    spawn: Callable[[ScheduledJob, datetime], subprocess.Popen] = spawn_job
    grace_seconds: float = 30.0
    poll_seconds: float = 0.5
    stop_requested: threading.Event = field(default_factory=threading.Event)
    running: dict[str, _Running] = field(default_factory=dict)

    def _fmt(self, moment: datetime) -> str:
        # The scheduler's log keeps seconds: it says exactly when each fire was started.
        return format_local(moment, "%Y-%m-%d %H:%M:%S %Z")

    def _next(self, job: ScheduledJob, after: datetime) -> datetime:
        return croniter(job.expression, after.astimezone(cron_tz())).get_next(datetime)

    def _reap(self) -> None:
        for name, run in list(self.running.items()):
            code = run.process.poll()
            if code is None:
                continue
            del self.running[name]
            took = time.monotonic() - run.started
            outcome = "ok" if code == 0 else f"FAILED (exit {code})"
            log = logger.info if code == 0 else logger.error
            log(
                "end %s pid %s for %s: %s after %.1fs",
                name,
                run.process.pid,
                self._fmt(run.fire),
                outcome,
                took,
            )

    def _fire(self, job: ScheduledJob, fire: datetime) -> None:
        current = self.running.get(job.label)
        if current is not None:
            logger.warning(
                "skip %s for %s: the run for %s (pid %s) is still going",
                job.label,
                self._fmt(fire),
                self._fmt(current.fire),
                current.process.pid,
            )
            return
        try:
            process = self.spawn(job, fire)
        except OSError as exc:
            logger.error("could not start %s for %s: %s", job.label, self._fmt(fire), exc)
            return
        self.running[job.label] = _Running(process, fire, time.monotonic())
        logger.info(
            "start %s pid %s for %s at %s",
            job.label,
            process.pid,
            self._fmt(fire),
            self._fmt(self.clock.now()),
        )

    def run(self) -> None:
        now = self.clock.now()
        due = {job.label: self._next(job, now) for job in self.jobs}
        by_name = {job.label: job for job in self.jobs}
        logger.info(
            "scheduler started: %d jobs, clock %s%s",
            len(self.jobs),
            self._fmt(now),
            f" x{self.clock.scale:g}" if self.clock.virtual else "",
        )
        for job in self.jobs:
            logger.info("  %-18s %-18s next %s", job.label, job.expression, self._fmt(due[job.label]))
        try:
            while not self.stop_requested.is_set():
                self._reap()
                now = self.clock.now()
                for name, fire in sorted(due.items(), key=lambda item: item[1]):
                    if fire <= now:
                        self._fire(by_name[name], fire)
                        due[name] = self._next(by_name[name], max(now, fire))
                wait = min(self.clock.real_seconds_until(min(due.values())), self.poll_seconds)
                self.stop_requested.wait(wait)
        finally:
            self._shutdown()

    def stop(self) -> None:
        self.stop_requested.set()

    def _shutdown(self) -> None:
        self._reap()
        if not self.running:
            logger.info("scheduler stopped")
            return
        logger.info(
            "stopping: SIGTERM to %s; waiting up to %gs",
            ", ".join(f"{name} (pid {run.process.pid})" for name, run in self.running.items()),
            self.grace_seconds,
        )
        for run in self.running.values():
            _signal(run.process, signal.SIGTERM)
        asked = time.monotonic()
        # grace_seconds is re-read: a second Ctrl-C sets it to 0 to stop waiting.
        while self.running and time.monotonic() < asked + self.grace_seconds:
            time.sleep(0.05)
            self._reap()
        for name, run in self.running.items():
            logger.error("%s (pid %s) ignored SIGTERM; killing it", name, run.process.pid)
            _signal(run.process, signal.SIGKILL)
            run.process.wait()
        self._reap()
        logger.info("scheduler stopped")


def _signal(process: subprocess.Popen, signum: int) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass  # it ended on its own between our poll and the signal: nothing left to stop
