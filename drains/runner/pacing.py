"""Pacing the calls by limit kind, the runner's half of the plan (``rules.limit_plan``).

``PacingSteps`` is mixed into ``drains.runner.run._Runner`` and uses its state. Two kinds of
refusal do not stop a run:

- **Overloaded (HTTP 529)** is no limit: ``_process_paced`` retries the call in its worker, up to
  DRAINS_OVERLOAD_RETRIES times, waiting DRAINS_OVERLOAD_RETRY_SECONDS and doubling (with
  jitter). Still overloaded after that, the refusal goes on as a rate limit with a short backoff
  (its ``reset_at``) and the item is not counted as failed.
- **A per-minute API limit** (requests, input or output tokens) clears in seconds:
  ``_slow_down`` puts the item back at the front of the queue, halves the calls in flight and
  pauses dispatching until the parsed reset (bounded, with jitter). Every
  DRAINS_SLOW_DOWN_RECOVER_CALLS calls that go through allow one more call in flight, up to
  ``--concurrency``. Only DRAINS_SLOW_DOWN_REPEATS limits in a row, with no call going through
  in between, stop the run with a backoff (of at least DRAINS_SLOW_DOWN_BACKOFF_SECONDS).

Every other kind stops the run (drains/runner/loop.py ``_apply``); what follows the backoff for
a weekly limit or a spend cap is drains/limits.py's.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from drains import rules
from drains.events import record_event
from drains.limitkinds import describe_kind
from drains.models import EventKind
from drains.ratelimit import RateLimited
from drains.runner.plugin import Processed

logger = logging.getLogger(__name__)

# How often a paused dispatcher or a worker waiting to retry looks for a stop.
PACE_POLL_SECONDS = 0.1


class Halted(Exception):
    """The run stopped while a call waited to be retried: the item is skipped, not failed."""


class PacingSteps:
    def _init_pacing(self) -> None:
        self.rng = random.Random()
        self.in_flight_limit: int | None = None  # None: not slowed down
        self.resume_at = 0.0  # time.monotonic() before which no call is dispatched
        self.limits_in_a_row = 0  # per-minute limits with no call gone through in between
        self.calls_since_slow_down = 0
        self.slow_downs = 0
        self.overload_retries = 0

    # --- overloaded: retry inside the run ---------------------------------------------------
    def _process_paced(self, item) -> Processed:
        """``drain.process(item)``, retrying an overloaded call (in this worker)."""
        retry = 0
        while True:
            try:
                return self.drain.process(item)
            except RateLimited as exc:
                plan = rules.limit_plan(exc.kind.kind)
                if plan != rules.LimitPlan.RETRY or retry >= settings.DRAINS_OVERLOAD_RETRIES:
                    raise
                retry += 1
                wait = rules.overload_retry_wait(
                    retry=retry,
                    base=float(settings.DRAINS_OVERLOAD_RETRY_SECONDS),
                    jitter=self.rng.random(),
                )
                self.overload_retries += 1  # an int add; read in the main thread at the end
                logger.warning(
                    "%s: item %s: API overloaded; retry %d of %d in %.1f s",
                    self.name, self.drain.item_key(item), retry,
                    settings.DRAINS_OVERLOAD_RETRIES, wait,
                )
                if not self._sleep_unless_halted(time.monotonic() + wait):
                    raise Halted from exc
                if not self._before_deadline() or not self._lock_held():
                    raise Halted from exc

    def _sleep_unless_halted(self, until: float) -> bool:
        """Sleep until ``until`` (monotonic); False as soon as the run is halted."""
        while not self.halted:
            left = until - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, PACE_POLL_SECONDS))
        return False

    # --- per-minute limits: slow down -------------------------------------------------------
    def _paced_capacity(self, capacity: int) -> int:
        return capacity if self.in_flight_limit is None else min(capacity, self.in_flight_limit)

    def _wait_for_pace(self) -> None:
        """Nothing in flight and dispatching paused: wait out the pause (a stop ends it)."""
        if self.resume_at > time.monotonic():
            self._sleep_unless_halted(self.resume_at)

    def _pausing(self) -> bool:
        return self.resume_at > time.monotonic()

    def _slow_down(self, outcome) -> bool:
        """A per-minute limit refused ``outcome``'s call: requeue the item and slow down.
        False when they have come too often in a row: the caller stops the run instead."""
        exc: RateLimited = outcome.error
        self.buffer.appendleft(outcome.item)  # not done, not failed: it goes again first
        self.dispatched -= 1
        if self._pausing():
            return True  # a call already in flight when the first limit came: same episode
        self.limits_in_a_row += 1
        if self.limits_in_a_row >= settings.DRAINS_SLOW_DOWN_REPEATS:
            return False
        now = timezone.now()
        wait = rules.slow_down_wait(
            reset_at=exc.reset_at,
            now=now,
            max_wait=float(settings.DRAINS_SLOW_DOWN_MAX_WAIT_SECONDS),
            jitter=self.rng.random(),
        )
        before = self.in_flight_limit or self.concurrency
        self.in_flight_limit = rules.slowed_limit(in_flight_limit=before)
        self.calls_since_slow_down = 0
        self.resume_at = time.monotonic() + wait
        self.slow_downs += 1
        described = describe_kind(exc.kind.kind, exc.kind.model)
        message = (
            f"{described}: slowing down to {self.in_flight_limit} call(s) in flight "
            f"(was {before}), next call in {wait:.1f} s ({self.limits_in_a_row} of "
            f"{settings.DRAINS_SLOW_DOWN_REPEATS} in a row before a backoff): {exc.message}"
        )
        logger.warning("%s: %s", self.name, message)
        record_event(
            drain=self.name,
            run=self.run_row,
            kind=EventKind.SLOW_DOWN,
            message=message[:2000],
            actor=self.actor,
            data={
                "kind": exc.kind.kind,
                "in_flight": self.in_flight_limit,
                "was": before,
                "wait_seconds": round(wait, 3),
                "in_a_row": self.limits_in_a_row,
            },
        )
        return True

    def _long_backoff(self, exc: RateLimited) -> RateLimited:
        """Per-minute limits that kept coming: a backoff of at least
        DRAINS_SLOW_DOWN_BACKOFF_SECONDS, as a RateLimited the loop records like any other."""
        floor = timezone.now() + timedelta(seconds=int(settings.DRAINS_SLOW_DOWN_BACKOFF_SECONDS))
        message = (
            f"{self.limits_in_a_row} per-minute limits in a row with no call going through: "
            f"{exc.message}"
        )
        return RateLimited(max(exc.reset_at, floor), message, trusted=exc.trusted, info=exc.info)

    def _call_went_through(self) -> None:
        """A call was answered: the per-minute limits are not in a row any more, and after
        enough answered calls one more call may be in flight."""
        self.limits_in_a_row = 0
        if self.in_flight_limit is None:
            return
        self.calls_since_slow_down += 1
        if self.calls_since_slow_down >= settings.DRAINS_SLOW_DOWN_RECOVER_CALLS:
            self.calls_since_slow_down = 0
            self.in_flight_limit += 1
            if self.in_flight_limit >= self.concurrency:
                self.in_flight_limit = None  # back to the full queue depth
