"""Reading the one schedule (``settings.CRONJOBS``): which jobs exist, when they fire next,
whether two of them can ever share a minute, and running it in the foreground.

Everything that shows or runs the schedule — the snapshot, ``manage.py schedule``,
``run_scheduler`` and the collision check — reads it through here; there is no second schedule.
This module never changes the schedule and never runs a job in-process: the foreground
scheduler starts each job as its own ``manage.py`` subprocess, exactly as cron would.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter
from django.conf import settings
from django.utils import timezone

from drains import registry
from drains.clock import format_local, operator_tz


@dataclass(frozen=True)
class ScheduledJob:
    name: str  # the management command, e.g. "drain_halacha"
    expression: str  # five-field cron expression
    args: tuple[str, ...]
    kwargs: dict
    suffix: str

    @property
    def kind(self) -> str:
        if self.drain is not None:
            return "drain"
        if self.name == "supervise_drains":
            return "supervisor"
        return "job"

    @property
    def drain(self) -> str | None:
        return registry.drain_for_command(self.name)


def scheduled_jobs(cronjobs=None) -> list[ScheduledJob]:
    """Parse CRONJOBS entries of the form (expr, 'django.core.management.call_command', [cmd, *args], {kwargs}, suffix)."""
    jobs = []
    for entry in settings.CRONJOBS if cronjobs is None else cronjobs:
        expression, func = entry[0], entry[1]
        args = list(entry[2]) if len(entry) > 2 and entry[2] else []
        kwargs = dict(entry[3]) if len(entry) > 3 and entry[3] else {}
        suffix = entry[4] if len(entry) > 4 else ""
        if func != "django.core.management.call_command" or not args:
            raise ValueError(
                f"CRONJOBS entry {entry!r}: every job must be a management command "
                "('django.core.management.call_command', ['command', ...])."
            )
        jobs.append(ScheduledJob(args[0], expression, tuple(args[1:]), kwargs, suffix))
    return jobs


def cron_tz() -> ZoneInfo:
    """The zone cron expressions are evaluated in (the operator zone by default)."""
    cron_zone = getattr(settings, "DRAINS_CRON_TZ", None)
    return ZoneInfo(cron_zone) if cron_zone else operator_tz()


def next_fire_times(expression: str, count: int = 1, now: datetime | None = None) -> list[datetime]:
    start = (now or timezone.now()).astimezone(cron_tz())
    it = croniter(expression, start)
    return [it.get_next(datetime) for _ in range(count)]


# --- The collision check: every job in a minute of its own ----------------------------------------

WEEK_MINUTES = 7 * 24 * 60
NEAR_MISS_MINUTES = 2  # jobs closer than this still pile up at start-up: warn
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# What the host's crontab understands (Vixie cron / cronie): no seconds field, no L, W, # or H.
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_ATOM = r"(?:\*|[0-9]+|[a-z]{3})(?:-(?:[0-9]+|[a-z]{3}))?(?:/[0-9]+)?"
_CRON_FIELD = re.compile(rf"^{_CRON_ATOM}(?:,{_CRON_ATOM})*$", re.IGNORECASE)


class BadExpression(ValueError):
    """A CRONJOBS expression that the host's crontab would not accept."""


def _standard_fields(expression: str) -> list[str]:
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() == "@reboot":
            raise BadExpression(
                "@reboot fires at boot, not at a minute; give the job a five-field time."
            )
        if text.lower() not in _CRON_ALIASES:
            raise BadExpression(f"{text!r} is not a crontab alias ({', '.join(_CRON_ALIASES)}).")
        text = _CRON_ALIASES[text.lower()]
    fields = text.split()
    if len(fields) != 5:
        raise BadExpression(
            f"{expression!r} has {len(fields)} fields; crontab needs exactly five "
            "(minute hour day-of-month month day-of-week)."
        )
    for value in fields:
        if not _CRON_FIELD.match(value):
            raise BadExpression(
                f"{expression!r}: {value!r} is not crontab syntax (numbers, names, *, ranges, "
                "steps and lists only; no L, W, # or H)."
            )
    return fields


def week_minutes(expression: str) -> frozenset[int]:
    """Every minute of a week (0 = Monday 00:00) in which ``expression`` can fire.

    The expression is expanded with croniter's own parser into its minute, hour and weekday
    sets, and the week is their product — the same set as stepping croniter through a whole
    week, without the 10,000 steps that every management command's start-up would pay for.
    A day-of-month or month field does not repeat weekly; such a job *can* fire on any weekday
    its days fall on, so it is counted on every weekday its day-of-week field allows (all seven
    when a day-of-month is given): the check may report a collision that happens once a year,
    but never misses one.
    """
    fields = _standard_fields(expression)
    try:
        expanded, _nth = croniter.expand(" ".join(fields))
    except (CroniterError, ValueError) as exc:
        raise BadExpression(f"{expression!r}: {exc}") from None
    minutes, hours, days, _months, weekdays = expanded
    minutes = range(60) if minutes == ["*"] else minutes
    hours = range(24) if hours == ["*"] else hours
    if days != ["*"] or weekdays == ["*"]:
        week_days = range(7)
    else:
        week_days = sorted({(int(d) - 1) % 7 for d in weekdays})  # cron 0/7 = Sunday
    return frozenset(d * 1440 + h * 60 + m for d in week_days for h in hours for m in minutes)


def describe_minute(minute_of_week: int) -> str:
    day, rest = divmod(minute_of_week % WEEK_MINUTES, 1440)
    return f"{WEEKDAYS[day]} {rest // 60:02d}:{rest % 60:02d}"


@dataclass(frozen=True)
class Clash:
    """Two jobs that fire in the same minute (``gap`` 0) or fewer than NEAR_MISS_MINUTES apart."""

    first: str
    second: str
    first_minute: int  # minute of the week at which ``first`` fires
    second_minute: int
    gap: int
    occurrences: int  # how many such minutes (or pairs) a week

    @property
    def is_collision(self) -> bool:
        return self.gap == 0

    def message(self) -> str:
        more = self.occurrences - 1
        tail = f" (and {more} more time{'s' if more != 1 else ''} a week)" if more else ""
        if self.is_collision:
            return (
                f"{self.first} and {self.second} both fire at "
                f"{describe_minute(self.first_minute)}{tail}."
            )
        return (
            f"{self.first} fires at {describe_minute(self.first_minute)} and {self.second} at "
            f"{describe_minute(self.second_minute)}, {self.gap} minute"
            f"{'s' if self.gap != 1 else ''} apart{tail}."
        )


def find_clashes(jobs: Iterable[ScheduledJob]) -> list[Clash]:
    """Collisions and near misses between every pair of jobs, over a whole week.

    Raises ``BadExpression`` (naming the job) for an expression crontab would refuse.
    """
    expanded: list[tuple[str, frozenset[int]]] = []
    for job in jobs:
        try:
            expanded.append((job.name, week_minutes(job.expression)))
        except BadExpression as exc:
            raise BadExpression(f"{job.name}: {exc}") from None
    clashes = []
    for i, (first, a) in enumerate(expanded):
        for second, b in expanded[i + 1 :]:
            shared = a & b
            if shared:
                minute = min(shared)
                clashes.append(Clash(first, second, minute, minute, 0, len(shared)))
            for gap in range(1, NEAR_MISS_MINUTES):
                pairs = sorted(
                    (m, (m + delta) % WEEK_MINUTES)
                    for m in a
                    for delta in (gap, -gap)
                    if (m + delta) % WEEK_MINUTES in b
                )
                if pairs:
                    clashes.append(Clash(first, second, *pairs[0], gap, len(pairs)))
    return clashes


def duplicate_jobs(jobs: Iterable[ScheduledJob]) -> list[str]:
    seen: set[str] = set()
    duplicates = []
    for job in jobs:
        if job.name in seen and job.name not in duplicates:
            duplicates.append(job.name)
        seen.add(job.name)
    return duplicates


# --- The table `manage.py schedule` prints ------------------------------------------------------


def run_name(job: ScheduledJob) -> str:
    """The name a job's DrainRun rows carry: drains by drain name, other jobs by command name."""
    return job.drain or job.name


@dataclass(frozen=True)
class ScheduleRow:
    job: ScheduledJob
    next_fires: list[datetime]  # in the operator zone
    last_run: object | None  # a DrainRun


def schedule_rows(now: datetime | None = None, count: int = 3) -> list[ScheduleRow]:
    now = now or timezone.now()
    jobs = scheduled_jobs()
    from drains.selectors import newest_runs  # the models load after the apps

    runs = newest_runs(run_name(job) for job in jobs)
    tz = operator_tz()
    return [
        ScheduleRow(
            job=job,
            next_fires=[t.astimezone(tz) for t in next_fire_times(job.expression, count, now)],
            last_run=runs.get(run_name(job)),
        )
        for job in jobs
    ]


# --- The foreground scheduler (`manage.py run_scheduler`) -----------------------------------------

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
    env = dict(os.environ)
    env["DRAINS_SCHEDULED_FOR"] = fire.isoformat()
    return subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *job_argv(job)],
        cwd=settings.BASE_DIR,
        env=env,
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
        current = self.running.get(job.name)
        if current is not None:
            logger.warning(
                "skip %s for %s: the run for %s (pid %s) is still going",
                job.name,
                self._fmt(fire),
                self._fmt(current.fire),
                current.process.pid,
            )
            return
        try:
            process = self.spawn(job, fire)
        except OSError as exc:
            logger.error("could not start %s for %s: %s", job.name, self._fmt(fire), exc)
            return
        self.running[job.name] = _Running(process, fire, time.monotonic())
        logger.info(
            "start %s pid %s for %s at %s",
            job.name,
            process.pid,
            self._fmt(fire),
            self._fmt(self.clock.now()),
        )

    def run(self) -> None:
        now = self.clock.now()
        due = {job.name: self._next(job, now) for job in self.jobs}
        by_name = {job.name: job for job in self.jobs}
        logger.info(
            "scheduler started: %d jobs, clock %s%s",
            len(self.jobs),
            self._fmt(now),
            f" x{self.clock.scale:g}" if self.clock.virtual else "",
        )
        for job in self.jobs:
            logger.info("  %-18s %-18s next %s", job.name, job.expression, self._fmt(due[job.name]))
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
