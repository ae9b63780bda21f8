"""The typed rows the operations snapshot's reads (drains/selectors/snapshot.py) hand over to
operations/selectors.py, states.py and projection.py: frozen, so what crosses the boundary is
named and checked, never an attribute glued onto a model instance or a dict read by string key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from drains.models import DrainControl, DrainRun


@dataclass(frozen=True)
class ControlRow:
    """A drain's control row and who last switched it off (its newest "disabled" event; the
    row's ``updated_by`` also names whoever last toggled a burst)."""

    control: DrainControl
    disabled_by: str | None


@dataclass(frozen=True)
class BackoffRow:
    """A backoff in force: the drain that observed it, its quota key, its reset."""

    name: str
    quota_key: str
    backoff_until: datetime


@dataclass(frozen=True)
class CurrentRun:
    """A drain's newest running run and whether the database session it recorded is there
    (None: it recorded none, so liveness is unknown)."""

    run: DrainRun
    backend_alive: bool | None


@dataclass(frozen=True)
class RunSpan:
    """A run as the projection's rate sees it: from its start to where its counters are known
    (its last checkpoint while running), the items done by then, its concurrency and status, and
    the time its workers spent on items by then (``busy``, summed over workers; 0: not
    recorded)."""

    start: datetime
    end: datetime
    items: int
    concurrency: int = 1
    status: str = "succeeded"
    busy: float = 0.0
    extractor: str = ""  # the extractor and model it ran with (DrainRun.extractor)

    def slot_seconds(self) -> float:
        """Working time per call slot, summed: what the workers spent on items, or (not
        recorded) the whole span at the run's concurrency."""
        if self.busy > 0:
            return self.busy
        return (self.end - self.start).total_seconds() * max(1, self.concurrency)


@dataclass(frozen=True)
class Backlog:
    """A drain's backlog per status, its staged rows, and when the oldest pending item arrived
    (None: nothing pending, or its items do not say)."""

    pending: int = 0
    staged: int = 0
    done: int = 0
    failed: int = 0
    oldest_pending_at: datetime | None = None
