"""Pacing the calls by limit kind, the runner's half of the plan (``policy.limit_plan``).

Two kinds of refusal do not stop a run:

- **Overloaded (HTTP 529)** is no limit: ``Pacing.call`` retries the call in its worker, up to
  DRAINS_OVERLOAD_RETRIES times, waiting DRAINS_OVERLOAD_RETRY_SECONDS and doubling (with
  jitter). Still overloaded after that, the refusal goes on as a rate limit with a short backoff
  (its ``reset_at``) and the item is not counted as failed.
- **A per-minute API limit** (requests, input or output tokens) clears in seconds: the worker
  that saw it halves the calls in flight and pauses every call until the parsed reset (bounded,
  with jitter) at once (``CallGate.pause``), and ``Pacing.slow_down`` puts the item back at the
  front of the queue. Each paid call passes the gate (``CallGate.enter``), which holds it while
  paused or while the slowed limit is reached. Every DRAINS_SLOW_DOWN_RECOVER_CALLS calls that go
  through allow one more call in flight, up to ``--concurrency``. Only DRAINS_SLOW_DOWN_REPEATS
  limits in a row, with no call going through in between, stop the run with a backoff (of at
  least DRAINS_SLOW_DOWN_BACKOFF_SECONDS).

``CallGate`` is the concurrency control alone (its own condition and counters, no database, no
settings: unit-tested as it is); ``Pacing`` is the runner's use of it. Every other kind stops
the run (drains/runner/loop.py); what follows the backoff for a weekly limit or a spend cap is
drains/quota/actions.py's.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from drains.models import EventKind
from drains.quota import policy
from drains.quota.kinds import describe_kind
from drains.quota.resets import RateLimited
from drains.runner.plugin import Processed
from drains.runner.spending import QuotaCeiling
from drains.runner.state import ItemOutcome, RunState

logger = logging.getLogger(__name__)

# How often a paused dispatcher or a worker waiting to retry looks for a stop.
PACE_POLL_SECONDS = 0.1


class Halted(Exception):
    """The run stopped while a call waited: the item is skipped, not failed."""


@dataclass(frozen=True)
class Pace:
    """A slow-down: calls in flight before and after, the pause, and the limits in a row."""

    before: int
    after: int
    wait: float
    in_a_row: int
    stop: bool  # too many in a row: the run stops with a backoff instead


class SlowedDown(Exception):
    """A per-minute limit refused a call; ``pace`` is the slow-down it began (None: it came
    during one already begun)."""

    def __init__(self, limit: RateLimited, pace: Pace | None):
        super().__init__(str(limit))
        self.limit = limit
        self.pace = pace


class CallGate:
    """How many paid calls may be in flight, and when the next may start.

    Workers call ``enter`` before a call and ``leave`` after it; ``pause`` (a per-minute limit)
    halves the calls allowed in flight and holds every call until the pause ends;
    ``went_through`` (an answered call) counts towards allowing one more again.
    """

    def __init__(
        self,
        *,
        concurrency: int,
        halted: Callable[[], bool],
        max_wait: float,
        repeats: int,
        recover_calls: int,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.concurrency = concurrency
        self._halted = halted
        self.max_wait = max_wait
        self.repeats = repeats
        self.recover_calls = recover_calls
        self.rng = rng or random.Random()
        self._clock = clock
        self._cond = threading.Condition()
        self.active_calls = 0
        self.in_flight_limit: int | None = None  # None: ``concurrency`` (not slowed down)
        self.resume_at = 0.0  # clock() before which no call starts
        self.limits_in_a_row = 0  # per-minute limits with no call gone through in between
        self.calls_since_slow_down = 0

    def enter(self) -> bool:
        """Wait for room for one more call; False (no room taken) once the run is halted."""
        with self._cond:
            while not self._halted():
                wait = self.resume_at - self._clock()
                limit = self.in_flight_limit or self.concurrency
                if wait <= 0 and self.active_calls < limit:
                    self.active_calls += 1
                    return True
                self._cond.wait(min(wait, PACE_POLL_SECONDS) if wait > 0 else PACE_POLL_SECONDS)
        return False

    def leave(self) -> None:
        with self._cond:
            self.active_calls -= 1
            self._cond.notify_all()

    def pause(self, *, reset_at: datetime, now: datetime) -> Pace | None:
        """A per-minute limit, in the worker that saw it and at once (before it or any other
        worker can start another call): pause the calls until ``reset_at`` (bounded, jittered)
        and halve the calls in flight. None when a pause is already on: a limit on a call that
        was in flight when it began is the same episode."""
        with self._cond:
            if self.resume_at > self._clock():
                return None
            self.limits_in_a_row += 1
            wait = policy.slow_down_wait(
                reset_at=reset_at, now=now, max_wait=self.max_wait, jitter=self.rng.random()
            )
            before = self.in_flight_limit or self.concurrency
            self.in_flight_limit = policy.slowed_limit(in_flight_limit=before)
            self.calls_since_slow_down = 0
            self.resume_at = self._clock() + wait
            return Pace(before, self.in_flight_limit, wait, self.limits_in_a_row,
                        self.limits_in_a_row >= self.repeats)

    def went_through(self) -> None:
        """A call was answered: the per-minute limits are not in a row any more, and after
        ``recover_calls`` answered calls one more call may be in flight."""
        with self._cond:
            self.limits_in_a_row = 0
            if self.in_flight_limit is None:
                return
            self.calls_since_slow_down += 1
            if self.calls_since_slow_down >= self.recover_calls:
                self.calls_since_slow_down = 0
                self.in_flight_limit += 1
                if self.in_flight_limit >= self.concurrency:
                    self.in_flight_limit = None  # back to ``concurrency``
                self._cond.notify_all()


class Pacing:
    """The runner's paid calls through the gate: the last checks before money is spent, the
    overload retries, and the main thread's half of a slow-down (requeue, timeline, summary)."""

    def __init__(
        self,
        state: RunState,
        *,
        ceiling: QuotaCeiling,
        rng: random.Random | None = None,
    ):
        self.state = state
        self.ceiling = ceiling  # one paid call: the quota ceiling's check, then the drain's
        self.rng = rng or random.Random()
        self.gate = CallGate(
            concurrency=state.concurrency,
            halted=lambda: state.halted,
            max_wait=float(settings.DRAINS_SLOW_DOWN_MAX_WAIT_SECONDS),
            repeats=int(settings.DRAINS_SLOW_DOWN_REPEATS),
            recover_calls=int(settings.DRAINS_SLOW_DOWN_RECOVER_CALLS),
            rng=self.rng,
        )
        self.slow_downs = 0
        self.overload_retries = 0  # an int add in workers; read in the main thread at the end

    def call(self, item: Any) -> Processed[Any]:
        """The paid call, through the gate: it waits while a slow-down pauses the calls or while
        the calls in flight are at the slowed limit; then the last checks before money is spent
        (a stop, the deadline, the drain lock) and the call, retrying an overloaded one."""
        if not self.gate.enter():
            raise Halted
        try:
            if not self.state.may_call():
                raise Halted
            return self._retrying_overloads(item)
        except RateLimited as exc:
            if policy.limit_plan(exc.kind.kind) == policy.LimitPlan.SLOW_DOWN:
                raise SlowedDown(exc, self.gate.pause(reset_at=exc.reset_at,
                                                      now=timezone.now())) from exc
            raise
        finally:
            self.gate.leave()

    def _retrying_overloads(self, item: Any) -> Processed[Any]:
        """``drain.process(item)``, retrying an overloaded call (in this worker)."""
        state = self.state
        retry = 0
        while True:
            try:
                return self.ceiling.call(item)  # the ceiling, then the call
            except RateLimited as exc:
                plan = policy.limit_plan(exc.kind.kind)
                if plan != policy.LimitPlan.RETRY or retry >= settings.DRAINS_OVERLOAD_RETRIES:
                    raise
                retry += 1
                wait = policy.overload_retry_wait(
                    retry=retry,
                    base=float(settings.DRAINS_OVERLOAD_RETRY_SECONDS),
                    jitter=self.rng.random(),
                )
                self.overload_retries += 1
                logger.warning(
                    "%s: item %s: API overloaded; retry %d of %d in %.1f s",
                    state.name, state.drain.item_key(item), retry,
                    settings.DRAINS_OVERLOAD_RETRIES, wait,
                )
                if not self._sleep_unless_halted(time.monotonic() + wait):
                    raise Halted from exc
                if not state.before_deadline() or not state.lock_held():
                    raise Halted from exc

    def _sleep_unless_halted(self, until: float) -> bool:
        """Sleep until ``until`` (monotonic); False as soon as the run is halted."""
        while not self.state.halted:
            left = until - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, PACE_POLL_SECONDS))
        return False

    def slow_down(self, outcome: ItemOutcome) -> bool:
        """The main thread's half: requeue the refused item and say so in the timeline. False
        when the limits have come too often in a row: the caller stops the run instead."""
        state = self.state
        slowed: SlowedDown = outcome.error
        state.buffer.appendleft(outcome.item)  # not done, not failed: it goes again first
        state.dispatched -= 1
        pace = slowed.pace
        if pace is None:
            return True
        if pace.stop:
            return False
        self.slow_downs += 1
        exc = slowed.limit
        described = describe_kind(exc.kind.kind, exc.kind.model)
        message = (
            f"{described}: slowing down to {pace.after} call(s) in flight (was {pace.before}), "
            f"next call in {pace.wait:.1f} s ({pace.in_a_row} of "
            f"{settings.DRAINS_SLOW_DOWN_REPEATS} in a row before a backoff): {exc.message}"
        )
        logger.warning("%s: %s", state.name, message)
        state.record_event(
            EventKind.SLOW_DOWN,
            message,
            {
                "kind": exc.kind.kind,
                "in_flight": pace.after,
                "was": pace.before,
                "wait_seconds": round(pace.wait, 3),
                "in_a_row": pace.in_a_row,
            },
        )
        return True

    def long_backoff(self, slowed: SlowedDown) -> RateLimited:
        """Per-minute limits that kept coming: a backoff of at least
        DRAINS_SLOW_DOWN_BACKOFF_SECONDS, as a RateLimited the loop records like any other."""
        exc = slowed.limit
        floor = timezone.now() + timedelta(seconds=int(settings.DRAINS_SLOW_DOWN_BACKOFF_SECONDS))
        message = (
            f"{self.gate.limits_in_a_row} per-minute limits in a row with no call going "
            f"through: {exc.message}"
        )
        return RateLimited(max(exc.reset_at, floor), message, trusted=exc.trusted, info=exc.info)

    def summary(self) -> str:
        """`` (slowed down 2 times, 3 overloaded calls retried)`` for the run's last line."""
        parts = []
        if self.slow_downs:
            parts.append(f"slowed down {self.slow_downs} time{'s' if self.slow_downs != 1 else ''}")
        if self.overload_retries:
            parts.append(f"{self.overload_retries} overloaded call(s) retried")
        return f" ({', '.join(parts)})" if parts else ""
