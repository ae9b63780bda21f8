"""What a supervisor tick decides: one ``Decision`` per step that has something to say."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from drains.models import EventKind

ACTOR = "supervisor"

# Actions that repeat every tick while their cause lasts: recorded once per episode (the last
# supervisor event of the drain says the same), printed every time.
QUIET_ACTIONS = frozenset({EventKind.KEEP_BACKOFF, EventKind.HOLD})


@dataclass
class Decision:
    drain: str
    action: EventKind  # also the kind of the event it records
    reason: str
    run_id: int | None = None
    data: dict = field(default_factory=dict)
    apply: Callable[[], str | None] | None = None  # returns what to add to the reason, or None
    followups: list[Decision] = field(default_factory=list)  # notes found while applying

    def line(self) -> str:
        return f"{self.drain}  {self.action}  {self.reason}"


@dataclass
class TickResult:
    decisions: list[Decision]
    failed: list[str]  # drains whose step raised


class Noted(Exception):
    """A step could not do its change; the decision becomes a visible note instead."""


class NotStarted(Exception):
    """Step 6's last precondition (a backlog) turned out false: a hold, not a failure."""
