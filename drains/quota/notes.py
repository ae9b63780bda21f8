"""What is said to an operator about a limit: the texts of the notes, in the operator's zone
(drains/clock.py formats every time)."""

from __future__ import annotations

from datetime import datetime

from drains.clock import short_time
from drains.quota.kinds import Kind, LimitKind


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
