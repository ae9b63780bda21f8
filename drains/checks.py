"""The system check that keeps the schedule staggered: no two CRONJOBS in the same minute.

The earlier system deadlocked because three jobs started in the same minute; this check makes
``manage.py check`` (and every command that runs the checks) fail before such a schedule can
be installed. It only reads ``settings.CRONJOBS`` — never the database, never the crontab.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from drains import schedule

HINT_COLLISION = (
    "Give each job a minute no other job uses (see the schedule table in docs/operations.md); "
    "jobs that start together compete for locks and the database at start-up."
)
HINT_NEAR_MISS = (
    f"Keep jobs at least {schedule.NEAR_MISS_MINUTES} minutes apart so that one has finished "
    "starting up before the next begins."
)


def check_schedule(app_configs=None, **kwargs) -> list:
    """drains.E001 collision, drains.W001 near miss, drains.E002 bad entry, drains.E003 duplicate,
    drains.E004 a DRAINS_SCHEDULE entry for no declared job."""
    try:
        jobs = schedule.scheduled_jobs(getattr(settings, "CRONJOBS", []))
    except (ValueError, TypeError, IndexError) as exc:
        return [Error(f"CRONJOBS cannot be read: {exc}", obj="settings.CRONJOBS", id="drains.E002")]
    problems: list[CheckMessage] = [
        Error(
            f"CRONJOBS runs {name} more than once; each command is one job with one schedule.",
            hint="Merge the entries into one cron expression.",
            obj="settings.CRONJOBS",
            id="drains.E003",
        )
        for name in schedule.duplicate_jobs(jobs)
    ]
    problems += [
        Error(
            f"DRAINS_SCHEDULE moves {name!r}, which no drain or job declares.",
            hint="Name a job by its command line, as manage.py schedule lists it.",
            obj="settings.DRAINS_SCHEDULE",
            id="drains.E004",
        )
        for name in schedule.unknown_moves()
    ]
    try:
        clashes = schedule.find_clashes(jobs)
    except schedule.BadExpression as exc:
        return [*problems, Error(str(exc), obj="settings.CRONJOBS", id="drains.E002")]
    for clash in clashes:
        if clash.is_collision:
            problems.append(
                Error(
                    clash.message(), hint=HINT_COLLISION, obj="settings.CRONJOBS", id="drains.E001"
                )
            )
        else:
            problems.append(
                Warning(
                    clash.message(), hint=HINT_NEAR_MISS, obj="settings.CRONJOBS", id="drains.W001"
                )
            )
    return problems
