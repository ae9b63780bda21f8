"""The runner's half of the quota ceiling (drains/quota/ceiling.py): never start a call that the
latest reading says would be past a window's ceiling, and keep every call's reading.

``CeilingSteps`` is mixed into ``drains.runner.run._Runner`` and uses its state:

- the readings it knows are the quota's ``QuotaWindow`` rows (read at the start and between
  chunks: other drains' and processes' calls on the same quota) and its own calls' signals, the
  freshest per window winning;
- before every paid call (``_call_noted``, inside the call gate) the pure rule decides; a breach
  raises ``CeilingReached``, a ``RateLimited`` of the breached window's kind until its reset, so
  the run stops with exactly the backoff a refusal would have written, without the refused call.
  A breach already known at the start skips the run the same way (``_ceiling_skip``);
- every call's signal (answered, failed or refused) is kept in memory at once (so the next call
  in any worker sees it) and written by ``record_signals`` at the next checkpoint, from the main
  thread, all of the chunk's in one statement: the paid call's staging never waits on it, and a
  failed write never loses a reply.

With N calls in flight, the N-1 others may finish past the ceiling: each was started before the
reading that crossed it came back. They are kept.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from drains.models import StopReason
from drains.quota.ceiling import Breach, first_over_ceiling
from drains.quota.kinds import Kind
from drains.quota.reserve import Reserves, reserves_from
from drains.quota.resets import RateLimited
from drains.quota.signals import QuotaSignal, WindowReading, supersedes
from drains.quota.store import quota_state, record_signals

logger = logging.getLogger(__name__)


class CeilingReached(RateLimited):
    """No call made: the quota is at its ceiling (or spending extra usage); ``breach`` says
    which window. Recorded like the refusal it avoids."""

    def __init__(self, breach: Breach, *, now: datetime):
        trusted = breach.resets_at is not None and breach.resets_at > now
        reset_at = (
            breach.resets_at
            if trusted
            else now + timedelta(seconds=int(settings.DRAINS_FALLBACK_BACKOFF_SECONDS))
        )
        super().__init__(reset_at, f"quota ceiling: {breach.reason}", trusted=trusted)
        self.kind = Kind(breach.kind, breach.model)
        self.breach = breach


class CeilingSteps:
    def _init_ceiling(self) -> None:
        self._quota_lock = threading.Lock()
        # window -> (reading, observed_at); the overage flag with its observation time
        self._readings: dict[str, tuple[WindowReading, datetime]] = {}
        self._overage: tuple[bool, datetime] | None = None
        self._unrecorded: list[tuple[QuotaSignal, datetime]] = []
        self.reserves: Reserves | None = None
        self.ceiling_stops = 0

    # --- what is known ----------------------------------------------------------------------
    def _load_quota(self) -> None:
        """The quota's stored readings and reserves (the start, and between chunks)."""
        if not self.quota_key:
            return
        rows, policy = quota_state(self.quota_key)  # one query
        self.reserves = reserves_from(policy)
        stale_after = timedelta(seconds=int(settings.DRAINS_FALLBACK_BACKOFF_SECONDS))
        now = timezone.now()
        with self._quota_lock:
            for row in rows:
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

    def _note_quota(self, signal: QuotaSignal | None) -> None:
        """What one call said of its quota: in memory at once, to the database at the next
        checkpoint; its ignored values go to the run's log."""
        if signal is None:
            return
        for warning in signal.warnings:
            logger.warning("%s: %s", self.name, warning)
        if not signal:
            return
        now = timezone.now()
        with self._quota_lock:
            for reading in signal.windows:
                self._keep(reading, now)
            self._overage = (signal.using_overage, now)
            self._unrecorded.append((signal, now))

    def _record_quota(self) -> None:
        """Write the signals noted since the last checkpoint: one statement for them all (main
        thread)."""
        with self._quota_lock:
            pending, self._unrecorded = self._unrecorded, []
        record_signals(
            quota_key=self.quota_key,
            drain=self.name,
            run_id=self.run_row.pk if self.run_row else None,
            signals=pending,
        )

    # --- the rule ---------------------------------------------------------------------------
    def _breach(self, now: datetime) -> Breach | None:
        if self.reserves is None:
            return None  # no quota key: nothing to read
        with self._quota_lock:
            readings = [reading for reading, _ in self._readings.values()]
            overage = bool(self._overage and self._overage[0])
        return first_over_ceiling(
            readings=readings, using_overage=overage, reserves=self.reserves, now=now
        )

    def _call_noted(self, item):
        """The paid call, if the quota is below its ceiling; its signal noted either way."""
        now = timezone.now()
        breach = self._breach(now)
        if breach is not None:
            raise CeilingReached(breach, now=now)
        try:
            processed = self.drain.process(item)
        except Exception as exc:
            self._note_quota(getattr(exc, "quota", None))
            raise
        self._note_quota(getattr(processed, "quota", None))
        return processed

    def _ceiling_skip(self):
        """At the start: a window already at its ceiling stops the run before any call, with
        the backoff its refusal would have written."""
        self._load_quota()
        now = timezone.now()
        breach = self._breach(now)
        if breach is None:
            return None
        limit = CeilingReached(breach, now=now)
        self._record_rate_limit(limit)
        return self._skip(
            StopReason.BACKOFF,
            f"{self.name}: quota {self.quota_key!r}: {breach.reason}; backing off until "
            f"{limit.reset_at.isoformat()}; no extractor call.",
            until=limit.reset_at.isoformat(),
            window=breach.window,
        )
