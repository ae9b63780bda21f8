"""The probe after a reset, the runner's half of it: one probe per quota, not one per drain.

Whether a probe is due is ``drains.quota.policy.probe_due``. ``ProbeClaim.claim_or_hold`` takes
the quota's probe claim (the run then makes its first call alone: ``RunState.probing``) or holds
while another drain probes; ``outcome`` records what the probe's call said and releases the
claim, so the loop opens up to full concurrency or stops.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from drains import selectors
from drains.locks import probe_holder
from drains.models import StopReason
from drains.quota import policy
from drains.quota.backoff import record_probe, record_probe_wait
from drains.runner.state import ItemOutcome, Outcome, RunResult, RunState

logger = logging.getLogger(__name__)

# How often a drain holding for another drain's probe looks at the quota's probe claim.
PROBE_POLL_SECONDS = 0.2


class ProbeClaim:
    def __init__(self, state: RunState):
        self.state = state
        self.claim: str | None = None  # the quota's probe claim, while this run holds it
        self.after_breaker = False  # the block being probed is the runner's breaker's
        self.faulted_item = ""  # the item the host-fault block being probed met

    def claim_or_hold(self) -> RunResult | None:
        """A probe after a reset (``policy.probe_due``): one per quota, not one per drain.

        The run that takes the quota's probe claim makes its first call alone (the loop sees
        ``state.probing``). A drain whose quota another drain is probing holds, with no call,
        until the claim is released, then looks again: the probe went through (go on at full
        concurrency, no probe of its own) or was refused (the new backoff skips this run:
        ``RunState.backoff_skip``). Returns what skips the run, or None to go on.
        """
        state = self.state
        claim = state.quota_key or f"drain:{state.name}"
        waited = False
        polls = max(1, int(settings.DRAINS_PROBE_WAIT_SECONDS / PROBE_POLL_SECONDS))
        for _ in range(polls):
            if not self.due():
                return state.backoff_skip() if waited else None
            if state.lock.try_claim_probe(claim):
                if self.due():  # under the claim: a probe may have ended just now
                    state.probing, self.claim = True, claim
                    if self.faulted_item:  # probe the host with another item than the one
                        state.held_back.add(self.faulted_item)  # that met the fault
                    logger.info(
                        "%s: quota %r reset since its last backoff: one probe call first",
                        state.name, state.quota_key,
                    )
                    return None
                state.lock.release_probe(claim)
                continue
            if not waited:
                waited = True
                prober = probe_holder(claim)
                logger.info("%s: holds for the probe of quota %r (%s)", state.name, claim, prober)
                record_probe_wait(
                    drain=state.name, quota_key=state.quota_key, prober=prober, actor=state.actor
                )
            time.sleep(PROBE_POLL_SECONDS)
        return state.skip(
            StopReason.PROBE_WAIT,
            f"{state.name}: quota {state.quota_key!r} is still being probed after its reset by "
            f"another drain ({settings.DRAINS_PROBE_WAIT_SECONDS:g} s waited); no extractor call.",
        )

    def due(self) -> bool:
        state = self.state
        evidence = selectors.probe_evidence(drain=state.name, quota_key=state.quota_key)
        self.after_breaker = bool((evidence.backoff or {}).get("breaker"))
        self.faulted_item = str((evidence.backoff or {}).get("item") or "")
        return policy.probe_due(
            backoff_until=evidence.backoff_until,
            last_success_at=evidence.last_success_at,
            now=timezone.now(),
        )

    def outcome(self, outcome: ItemOutcome, *, record_limit: Callable[[], None],
                reblock: Callable[[], None] = lambda: None,
                reopen: Callable[[], None] = lambda: None) -> None:
        """The probe's call came back: the quota answers (any reply it was paid for, even an
        item failure) and the run opens up, or it refused (``record_limit`` writes the new
        backoff and the run stops before any further call; an answer ``reopen``s what the probe
        held back). After the breaker's block an item failure is no answer: the items still
        fail, so ``reblock`` blocks again. No call made (a stop before it, an error before any
        reply): the probe is still due, for the next run."""
        state = self.state
        answered = outcome.kind in (Outcome.DONE, Outcome.FAILED, Outcome.SUPERSEDED) or (
            outcome.kind == Outcome.ERROR and outcome.usage is not None
        )
        if outcome.kind == Outcome.RATE_LIMITED and getattr(outcome.error, "breach", None):
            pass  # the quota's ceiling stopped it before the call (spending.py): no probe made
        elif outcome.kind == Outcome.RATE_LIMITED:
            record_limit()
            self._record(ok=False, until=outcome.error.reset_at)
        elif outcome.kind == Outcome.FAILED and self.after_breaker:
            reblock()
            limit = self.state.rate_limit
            self._record(ok=False, until=limit.reset_at if limit is not None else None)
        elif answered:
            self._record(ok=True)
            logger.info("%s: probe after reset went through; full concurrency", state.name)
            reopen()
        self.release()

    def _record(self, *, ok: bool, until: datetime | None = None) -> None:
        state = self.state
        record_probe(
            drain=state.name, quota_key=state.quota_key, run=state.run_row, ok=ok,
            actor=state.actor, until=until,
        )

    def release(self) -> None:
        """Release the quota's probe claim (after the probe's outcome, or at the run's end)."""
        self.state.probing = False
        claim, self.claim = self.claim, None
        if claim is not None:
            self.state.lock.release_probe(claim)
