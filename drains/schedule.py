"""The one schedule: built from what the drains and jobs declare, then read — which jobs exist,
when they fire next, and whether two of them can ever share a minute (drains/scheduler.py runs
it in the foreground).

Each drain declares its cron slot (``Drain.schedule``), each other job its own
(``registry.register_job``); ``declared_cronjobs`` builds ``settings.CRONJOBS`` from them when it
is read, after the apps have registered both. Everything that shows or runs the schedule — the
snapshot, ``manage.py schedule``, ``crontab add``, ``run_scheduler``, the collision check, the
docs' table and deploy/crontab.example (checked by their tests) — reads it through here; there is
no second schedule.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter
from django.conf import settings
from django.utils import timezone

from drains import registry
from drains.clock import operator_tz

if TYPE_CHECKING:  # the settings import this module: no models at import time
    from drains.models import DrainRun


def declared_cronjobs() -> list[tuple]:
    """CRONJOBS as declared: each registered drain with a ``schedule`` runs its command line at
    it, each registered job its command; in django-crontab's form, by the minute of the hour
    they fire at. A cron line says ``--trigger cron`` (a cron start of a job that is not a drain
    claims its slot, so that with the crontab on several hosts it runs once: drains/jobs.py) and
    appends its output to ``DRAINS_LOG_DIR/<command>.log``."""
    declared = [(cls.schedule, cls.command_line()) for cls in registry.classes() if cls.schedule]
    declared += [(expression, [command]) for command, expression in registry.jobs().items()]
    moved = getattr(settings, "DRAINS_SCHEDULE", {})  # a host's own slots (config/app_settings.py)
    declared = [(moved.get(" ".join(argv), expression), argv) for expression, argv in declared]
    entries = [
        (expression, "django.core.management.call_command", argv, {"trigger": "cron"},
         f">> {shlex.quote(str(Path(settings.DRAINS_LOG_DIR) / cron_log_name(argv)))} 2>&1")
        for expression, argv in declared
    ]
    return sorted(entries, key=lambda entry: (_first_minute(entry[0]), entry[2]))


def unknown_moves() -> list[str]:
    """The command lines ``DRAINS_SCHEDULE`` names that no drain or job declares."""
    known = {" ".join(cls.command_line()) for cls in registry.classes() if cls.schedule}
    known |= set(registry.jobs())
    return sorted(set(getattr(settings, "DRAINS_SCHEDULE", {})) - known)


def cron_log_name(argv: list[str]) -> str:
    """The file a cron line appends to: ``<command>.log``, ``drain_<name>.log`` for ``drain NAME``."""
    return "_".join(argv) + ".log"


@lru_cache(maxsize=64)
def _first_minute(expression: str) -> tuple[int, int]:
    try:
        week = week_minutes(expression)
    except BadExpression:  # the check reports it; the order does not matter then
        return (0, 0)
    return min((m % 60, m) for m in week) if week else (0, 0)


@dataclass(frozen=True)
class ScheduledJob:
    name: str  # the management command, e.g. a drain's own, "drain" (with its name) or "send_digest"
    expression: str  # five-field cron expression
    args: tuple[str, ...]
    kwargs: dict
    suffix: str

    @property
    def label(self) -> str:
        """The job's identity: its command line (``drain_metadata``, ``drain word_count``); two
        drains run by ``manage.py drain NAME`` are two jobs."""
        return " ".join([self.name, *self.args])

    @property
    def kind(self) -> str:
        if self.drain is not None:
            return "drain"
        if self.name == "supervise_drains":
            return "supervisor"
        return "job"

    @property
    def drain(self) -> str | None:
        if self.name == "drain" and self.args:  # manage.py drain NAME
            return self.args[0]
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
    """The zone cron reads the expressions in: the host's, unless ``DRAINS_CRON_TZ`` declares
    another (config/env.py ``env_cron_zone``). Every reader of the schedule evaluates them here,
    so the page, ``schedule``, the slots and ``run_scheduler`` fire when cron does."""
    cron_zone = getattr(settings, "DRAINS_CRON_TZ", None)
    return ZoneInfo(cron_zone) if cron_zone else operator_tz()


def fires_daily(expression: str) -> bool:
    """Whether the expression names an hour (a daily or weekly job), so that the zone it is read
    in moves it (an hourly job's minutes are the same in every zone a whole hour off UTC)."""
    return _standard_fields(expression)[1] != "*"


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
    week_days: Iterable[int]
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
            expanded.append((job.label, week_minutes(job.expression)))
        except BadExpression as exc:
            raise BadExpression(f"{job.label}: {exc}") from None
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
        if job.label in seen and job.label not in duplicates:
            duplicates.append(job.label)
        seen.add(job.label)
    return duplicates


# --- The table `manage.py schedule` prints ------------------------------------------------------


def run_name(job: ScheduledJob) -> str:
    """The name a job's DrainRun rows carry: drains by drain name, other jobs by command name."""
    return job.drain or job.name


@dataclass(frozen=True)
class ScheduleRow:
    job: ScheduledJob
    next_fires: list[datetime]  # in the operator zone
    last_run: DrainRun | None


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
