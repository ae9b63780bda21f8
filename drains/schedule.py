"""Reading the one schedule (``settings.CRONJOBS``): which jobs exist, when they fire next.

Everything that shows or runs the schedule — the snapshot, ``manage.py schedule``,
``run_scheduler`` and the collision check — reads it through here; there is no second schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter
from django.conf import settings
from django.utils import timezone

# Jobs that are drains, by command name -> drain name.
DRAIN_COMMANDS = {"drain_halacha": "halacha", "drain_metadata": "metadata"}


@dataclass(frozen=True)
class ScheduledJob:
    name: str  # the management command, e.g. "drain_halacha"
    expression: str  # five-field cron expression
    args: tuple[str, ...]
    kwargs: dict
    suffix: str

    @property
    def kind(self) -> str:
        if self.name in DRAIN_COMMANDS:
            return "drain"
        if self.name == "supervise_drains":
            return "supervisor"
        return "job"

    @property
    def drain(self) -> str | None:
        return DRAIN_COMMANDS.get(self.name)


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
    return ZoneInfo(getattr(settings, "DRAINS_CRON_TZ", None) or settings.DRAINS_OPERATOR_TZ)


def next_fire_times(expression: str, count: int = 1, now: datetime | None = None) -> list[datetime]:
    start = (now or timezone.now()).astimezone(cron_tz())
    it = croniter(expression, start)
    return [it.get_next(datetime) for _ in range(count)]
