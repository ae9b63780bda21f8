"""What is said to an operator about a limit: the texts of the notes, in the operator's zone."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from drains.quota.kinds import Kind, LimitKind
from drains.zone import local


def short_time(moment: datetime) -> str:
    """``Mon 09:00`` in the operator zone; with the date when it is more than 6 days away."""
    at = local(moment)
    if moment - timezone.now() > timedelta(days=6):
        return f"{at:%a %d %b %H:%M}"
    return f"{at:%a %H:%M}"


def weekly_limit_message(*, kind: Kind, reset_at: datetime, burst_until: datetime) -> str:
    what = (
        f"weekly limit of {kind.model}"
        if kind.kind == LimitKind.WEEKLY_MODEL and kind.model
        else "weekly limit"
    )
    return (
        f"{what} reached; it resets {short_time(reset_at)}, after the burst deadline "
        f"{short_time(burst_until)}: the burst ended early"
    )
