"""No idle open window in a burst: the run waits out a session (5-hour) limit, or a weekly
ceiling the reserve's release lifts, at zero calls, and goes on at the reset.

``SessionWait`` takes the run's ``RunState`` and the parts it drives (the loop, the probe claim).

- At a weekly ceiling that the reserve's release will lift before the reset
  (drains/runner/spending.py ``QuotaCeiling.lift``): the backoff lasts until the ceiling rises past the week's utilization
  (drains/quota/ceiling.py ``weekly_ceiling_rises_past``), not until the reset, so the released
  reserve is spent; without the release it lasts to the reset and the burst ends there.
- After a session limit in a burst, or such a weekly ceiling (``wait_for_session_reset``): a
  refusal or a ceiling whose end comes before the burst's deadline, and within
  ``DRAINS_BURST_WAIT_MAX_HOURS``, does not end the run. The backoff is written as
  always (every drain on the quota holds); the run waits at zero calls, checkpointing (so it is
  never taken for hung) and re-reading its control (burst off, deadline, disabled, a signal, the
  lost lock all end the wait), until the reset plus ``DRAINS_SESSION_RESUME_SECONDS``. Half a
  second before the reset it makes every check but the call (the lock, the control, a newer
  limit, the quota's probe claim, the next item), so the call itself goes at the reset. The
  probe rule applies as at a run's start: the first call goes alone (this run took the quota's
  probe claim), or it holds for another drain's probe (``ProbeSteps._probe_or_hold``). So the first call after the reset starts within
  seconds of it, where a stopped run waited for the supervisor's next tick (up to 15 minutes).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from drains.models import RunMode, StopReason
from drains.quota.backoff import backoff_in_force
from drains.quota.kinds import LimitKind
from drains.runner.loop import WorkLoop
from drains.runner.probe import ProbeClaim
from drains.runner.state import RunState

logger = logging.getLogger(__name__)

WAIT_STEP_SECONDS = 0.5  # how often the wait looks at a stop (a signal, the burst's end)
PREPARE_SECONDS = 0.5  # the checks before the first call after the reset are made this early


class SessionWait:
    def __init__(self, state: RunState, *, loop: WorkLoop, probe: ProbeClaim) -> None:
        self.state = state
        self.loop = loop
        self.probe = probe

    # --- no idle open window -------------------------------------------------------------
    def _session_wait_due(self) -> bool:
        limit = self.state.rate_limit
        if limit is None:
            return False
        waitable = limit.kind.kind == LimitKind.SESSION or getattr(limit, "lifted", False)
        max_wait = float(settings.DRAINS_BURST_WAIT_MAX_HOURS) * 3600
        return (
            self.state.mode == RunMode.BURST
            and waitable
            and (limit.reset_at - timezone.now()).total_seconds() <= max_wait
            and self.state.error is None
            and not self.state.signalled
            and self.state.deadline is not None
            and limit.reset_at < self.state.deadline
            and self.state.stop_reason in (StopReason.RATE_LIMITED, None)
        )

    def wait_for_session_reset(self) -> bool:
        """Wait at zero calls for the session window's reset; True when the run is to go on
        (its first call then goes as the probe), False when it ends as it stood."""
        limit = self.state.rate_limit
        if limit is None or not self._session_wait_due():
            return False
        resume_at = limit.reset_at.timestamp() + float(settings.DRAINS_SESSION_RESUME_SECONDS)
        logger.info("%s: %s until %s, before the burst's deadline: waiting at zero calls to go "
                    "on then", self.state.name, "session limit" if limit.kind.kind == LimitKind.SESSION
                    else "weekly ceiling", limit.reset_at.isoformat())
        self.loop.checkpoint()  # the chunk so far, committed before the wait
        # ``rate_limit`` stays set while waiting: the backoff this run wrote is not a reason to
        # stop (it is what the run waits out); any other stop is.
        self.state.stop_reason, self.state.halted = None, False
        reset = limit.reset_at.timestamp()
        if not self._wait_before_reset(prepare_at=min(resume_at, reset) - PREPARE_SECONDS,
                                       reset=reset):
            return False
        # Everything but the call, just before the reset, so that the call goes at it: the lock,
        # the burst and the switch once more, a newer limit, the probe's claim, the next item.
        if self.state.stop_reason is None:
            self.state.lock_held()
            self.loop.refresh_control()
        if self.state.stop_reason is not None or not self.state.before_deadline():
            return False
        later = backoff_in_force(drain=self.state.name, quota_key=self.state.quota_key)
        if later is not None and later.until > limit.reset_at:  # another drain's, a weekly one
            self.state.stop(StopReason.RATE_LIMITED)
            return False
        claim = self.state.quota_key or f"drain:{self.state.name}"
        claimed = self.state.lock.try_claim_probe(claim)
        self._reread_backlog()
        while (left := resume_at - time.time()) > 0 and self.state.stop_reason is None:
            time.sleep(min(WAIT_STEP_SECONDS, left))
        if self.state.stop_reason is not None:
            if claimed:
                self.state.lock.release_probe(claim)
            return False
        self.state.rate_limit = None
        if claimed:  # the probe after the reset is this run's first call, alone
            self.state.probing, self.probe.claim = True, claim
        elif self.probe.claim_or_hold() is not None:
            # another drain probes it: held, then skipped
            self.state.rate_limit = limit
            self.state.stop(StopReason.RATE_LIMITED)
            return False
        logger.info("%s: the window reset; going on%s", self.state.name,
                    " (probe first)" if self.state.probing else "")
        return True

    def _wait_before_reset(self, *, prepare_at: float, reset: float) -> bool:
        """Sleep at zero calls until ``prepare_at`` (epoch seconds), with a checkpoint every
        third of the hung threshold; False when the run stopped meanwhile."""
        every = min(30.0, settings.DRAINS_HUNG_AFTER_SECONDS / 3)
        last = time.monotonic()
        while time.time() < prepare_at:
            if self.state.stop_reason is not None:  # a signal, the burst off or past, the lock lost
                return False
            time.sleep(min(WAIT_STEP_SECONDS, max(0.0, prepare_at - time.time())))
            # Checkpoints only before the reset: one after it would read as a call that worked
            # since the reset (drains/selectors/runs.py probe_evidence), and skip the probe.
            if time.monotonic() - last >= every and time.time() < reset - 1:
                self.loop.checkpoint()
                last = time.monotonic()
        return True

    def _reread_backlog(self) -> None:
        """Items this run skipped while it stopped are pending still: read the backlog again
        (the first item at once, so that the call goes at the reset)."""
        self.state.buffer.clear()
        self.state.cursor, self.state.exhausted = None, False
        if (first := self.loop.next_item()) is not None:
            self.state.buffer.appendleft(first)
