"""What a run may spend: the runner's half of the quota ceiling (drains/quota/ceiling.py), and
the autopilot between chunks (``Autopilot``).

The ceiling: never start a call that the latest reading says would be past a window's ceiling,
and keep every call's reading.

``QuotaCeiling`` takes the run's ``RunState``:

- the readings it knows are the quota's ``QuotaWindow`` rows (read at the start and between
  chunks: other drains' and processes' calls on the same quota) and its own calls' signals, the
  freshest per window winning;
- before every paid call (``call``, inside the call gate) the pure rule decides, keeping one
  call's headroom per call (the expected step of each window, measured from the quota's samples
  and read with the rows; ``call_step``) for the call to start and each one already in flight;
  a breach raises ``CeilingReached``, a ``RateLimited`` of the breached window's kind until its reset, so
  the run stops with exactly the backoff a refusal would have written, without the refused call.
  A breach already known at the start skips the run the same way (``reached_at_start``);
- every call's signal (answered, failed or refused) is kept in memory at once (so the next call
  in any worker sees it) and written by ``record`` (``record_signals``) at the next checkpoint, from the main
  thread, all of the chunk's in one statement: the paid call's staging never waits on it, and a
  failed write never loses a reply.

With N calls in flight, the headroom counts them all (the check and the count are one step
under the lock, so two workers never both take the last room); when the steps are larger than
measured, the N-1 others may still finish past the ceiling: each was started before the reading
that crossed it came back. They are kept.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.utils import timezone

from drains.bursts import get_drain_burst
from drains.models import RunMode
from drains.quota.ceiling import (
    Breach,
    call_step,
    first_over_ceiling,
    weekly_ceiling_rises_past,
)
from drains.quota.kinds import Kind
from drains.quota.reserve import Reserves, reserves_from
from drains.quota.resets import RateLimited
from drains.quota.signals import QuotaSignal, WindowReading, supersedes
from drains.quota.store import quota_state, record_signals
from drains.runner.plugin import Processed
from drains.runner.state import RunState

logger = logging.getLogger(__name__)


class CeilingReached(RateLimited):
    """No call made: the quota is at its ceiling (or spending extra usage); ``breach`` says
    which window. Recorded like the refusal it avoids."""

    def __init__(self, breach: Breach, *, now: datetime) -> None:
        trusted = breach.resets_at is not None and breach.resets_at > now
        reset_at = (
            cast(datetime, breach.resets_at)  # trusted: not None
            if trusted
            else now + timedelta(seconds=int(settings.DRAINS_FALLBACK_BACKOFF_SECONDS))
        )
        super().__init__(reset_at, f"quota ceiling: {breach.reason}", trusted=trusted)
        self.kind = Kind(breach.kind, breach.model)
        self.breach = breach
        self.lifted = False  # the reserve's release lifts it before the reset (``lift``)


class QuotaCeiling:
    def __init__(self, state: RunState) -> None:
        self.state = state
        self._quota_lock = threading.Lock()
        # window -> (reading, observed_at); the overage flag with its observation time
        self._readings: dict[str, tuple[WindowReading, datetime]] = {}
        self._overage: tuple[bool, datetime] | None = None
        self._unrecorded: list[tuple[QuotaSignal, datetime]] = []
        self._steps: dict[str, float] = {}  # window -> one call's expected step (call_step)
        self._in_flight = 0  # paid calls started and not answered yet
        self.reserves: Reserves | None = None
        self.ceiling_stops = 0

    # --- what is known ----------------------------------------------------------------------
    def load(self) -> None:
        """The quota's stored readings and reserves (the start, and between chunks)."""
        if not self.state.quota_key:
            return
        rows, policy = quota_state(self.state.quota_key)  # one query
        self.reserves = reserves_from(policy)
        stale_after = timedelta(seconds=int(settings.DRAINS_FALLBACK_BACKOFF_SECONDS))
        now = timezone.now()
        with self._quota_lock:
            for row in rows:
                self._steps[row.window] = call_step(
                    row.step, row.step_pairs
                )
                if row.resets_at is None and now - row.observed_at > stale_after:
                    continue  # no reset known and old: it can no longer say the window is full
                reading = WindowReading(row.window, row.utilization, row.resets_at, row.status)
                self._keep(reading, row.observed_at)
            if rows:
                newest = max(rows, key=lambda row: row.observed_at)
                if self._overage is None or self._overage[1] <= newest.observed_at:
                    self._overage = (newest.using_overage, newest.observed_at)

    def _keep(self, reading: WindowReading, observed_at: datetime) -> None:
        known = self._readings.get(reading.window)
        if known is None or supersedes(reading, observed_at, *known):
            self._readings[reading.window] = (reading, observed_at)

    def note(self, signal: QuotaSignal | None, *, finished: bool = False) -> None:
        """What one call said of its quota: in memory at once, to the database at the next
        checkpoint; its ignored values go to the run's log. ``finished``: the call was one of
        ``call``'s, no longer in flight (counted down with its reading, in one step)."""
        if signal is not None:
            for warning in signal.warnings:
                logger.warning("%s: %s", self.state.name, warning)
        if not signal:
            if finished:
                with self._quota_lock:
                    self._in_flight -= 1
            return
        now = timezone.now()
        with self._quota_lock:
            if finished:
                self._in_flight -= 1
            for reading in signal.windows:
                self._keep(reading, now)
            self._overage = (signal.using_overage, now)
            self._unrecorded.append((signal, now))

    def record(self) -> None:
        """Write the signals noted since the last checkpoint: one statement for them all (main
        thread)."""
        with self._quota_lock:
            pending, self._unrecorded = self._unrecorded, []
        record_signals(
            quota_key=self.state.quota_key,
            drain=self.state.name,
            run_id=self.state.run_row.pk if self.state.run_row else None,
            signals=pending,
        )

    # --- the rule ---------------------------------------------------------------------------
    def breach(self, now: datetime) -> Breach | None:
        """What stops the next call now (one call's headroom kept), or None."""
        with self._quota_lock:
            return self._breach(now, calls=1)

    def _breach(self, now: datetime, *, calls: int) -> Breach | None:
        if self.reserves is None:
            return None  # no quota key: nothing to read
        readings = [reading for reading, _ in self._readings.values()]
        overage = bool(self._overage and self._overage[0])
        return first_over_ceiling(
            readings=readings, using_overage=overage, reserves=self.reserves, now=now,
            steps=self._steps, calls=calls,
        )

    def call(self, item: Any) -> Processed[Any]:
        """The paid call, if the quota leaves room for it (and for those in flight) below its
        ceiling; its signal noted either way."""
        now = timezone.now()
        with self._quota_lock:  # decide and count as one step: the last room is taken once
            breach = self._breach(now, calls=self._in_flight + 1)
            if breach is None:
                self._in_flight += 1
        if breach is not None:
            raise CeilingReached(breach, now=now)
        signal = None
        try:
            processed = self.state.drain.process(item)
            signal = getattr(processed, "quota", None)
        except BaseException as exc:
            signal = getattr(exc, "quota", None)
            raise
        finally:
            self.note(signal, finished=True)
        return processed

    def reached_at_start(self) -> CeilingReached | None:
        """At the start: a window already at its ceiling is the limit its refusal would have
        been; the run records its backoff and is skipped before any call."""
        self.load()
        now = timezone.now()
        breach = self.breach(now)
        return None if breach is None else CeilingReached(breach, now=now)

    def lift(self, exc: RateLimited) -> None:
        """A weekly ceiling that the reserve's release lifts before the reset: the backoff lasts
        until the ceiling rises past the week's utilization and the headroom the rule keeps
        (``weekly_ceiling_rises_past``), not until the reset, so the released reserve is spent.
        Changes ``exc`` in place."""
        if not isinstance(exc, CeilingReached) or self.reserves is None:
            return
        breach = exc.breach
        rises = weekly_ceiling_rises_past(
            window=breach.window, utilization=breach.utilization + breach.headroom,
            reserves=self.reserves,
            resets_at=breach.resets_at, now=timezone.now(),
        )
        if rises is not None and rises < exc.reset_at:
            exc.reset_at, exc.lifted = rises, True
            exc.message += f"; the reserve's release lifts the ceiling at {rises.isoformat()}"


class Autopilot:
    """Between chunks: a normal run on a quota whose autopilot is on asks
    ``drains.quota.autopilot.run_autopilot``; when that starts the burst on this drain, the run
    goes on as a burst run (deadline the weekly reset, the normal run's default caps lifted)."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def between_chunks(self) -> None:
        if self.state.mode != RunMode.NORMAL or not self.state.quota_key or self.state.stop_reason is not None:
            return
        from drains.quota.autopilot import autopilot_enabled, run_autopilot
        from drains.runs import switch_to_burst

        if not autopilot_enabled(self.state.quota_key):
            return
        for line in run_autopilot(quota_key=self.state.quota_key, now=timezone.now()):
            logger.info("%s: %s", self.state.name, line)
        burst = get_drain_burst(self.state.name)
        until = burst.burst_until
        if not burst.active or until is None:  # an active burst has a deadline
            return
        self.state.mode, self.state.deadline = RunMode.BURST, until
        self.state.shown.deadline = until
        if self.state.max_items == settings.DRAINS_DEFAULT_MAX_ITEMS and not self.state.explicit_caps[0]:
            self.state.max_items = None
        if self.state.max_minutes == settings.DRAINS_DEFAULT_MAX_MINUTES and not self.state.explicit_caps[1]:
            self.state.max_minutes = None
        switch_to_burst(run=self.state.row, deadline=until)
        logger.info("%s: the autopilot's burst is on: this run goes on until %s",
                    self.state.name, until.isoformat())
