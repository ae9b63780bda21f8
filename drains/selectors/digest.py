"""What the daily digest reads (see drains/selectors/__init__.py): a day's runs, a day's burst
events, and the control rows, a fixed number of queries whatever the history."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from drains.models import DrainControl, DrainEvent, DrainRun, EventKind

BURST_STARTED = EventKind.BURST_ON
BURST_ENDED = (EventKind.BURST_OFF, EventKind.BURST_EXPIRED, EventKind.BURST_ENDED)
# What the plan by limit kind did (drains/quota/actions.py, drains/runner/pacing.py).
LIMIT_ACTIONS = (EventKind.PAUSED, EventKind.SLOW_DOWN)


def runs_in_window(names: list[str], *, since: datetime, until: datetime) -> QuerySet[DrainRun]:
    """Runs of ``names`` that did something in the window: finished in it, or still open and
    started before its end; oldest first."""
    in_window = Q(finished_at__gte=since, finished_at__lt=until) | Q(
        finished_at__isnull=True, started_at__lt=until
    )
    return DrainRun.objects.filter(in_window, drain__in=names).order_by("started_at", "id")


def burst_events(names: list[str], *, since: datetime, until: datetime) -> QuerySet[DrainEvent]:
    """Bursts started and ended in the window, and the drains paused or slowed down by a
    limit, oldest first."""
    return DrainEvent.objects.filter(
        drain__in=names,
        at__gte=since,
        at__lt=until,
        kind__in=[BURST_STARTED, *BURST_ENDED, *LIMIT_ACTIONS],
    ).order_by("at", "id")


def controls(names: list[str]) -> QuerySet[DrainControl]:
    return DrainControl.objects.filter(name__in=names)
