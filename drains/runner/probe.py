"""The probe after a reset, the runner's half of it: one probe per quota, not one per drain.

``ProbeSteps`` is mixed into ``drains.runner.run._Runner`` and uses its state (``name``,
``quota_key``, ``lock``, ``actor``) and its ``_skip`` / ``_backoff_skip``. Whether a probe is due
is ``drains.policy.probe_due``; the loop makes the first call alone while ``self.probing``.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from drains import selectors
from drains.locks import probe_holder
from drains.models import StopReason
from drains.quota import policy
from drains.quota.backoff import record_probe_wait

logger = logging.getLogger(__name__)

# How often a drain holding for another drain's probe looks at the quota's probe claim.
PROBE_POLL_SECONDS = 0.2


class ProbeSteps:
    def _probe_or_hold(self) -> object | None:
        """A probe after a reset (``policy.probe_due``): one per quota, not one per drain.

        The run that takes the quota's probe claim makes its first call alone (the loop sees
        ``self.probing``). A drain whose quota another drain is probing holds, with no call,
        until the claim is released, then looks again: the probe went through (go on at full
        concurrency, no probe of its own) or was refused (the new backoff skips this run).
        """
        claim = self.quota_key or f"drain:{self.name}"
        waited = False
        polls = max(1, int(settings.DRAINS_PROBE_WAIT_SECONDS / PROBE_POLL_SECONDS))
        for _ in range(polls):
            if not self._probe_due():
                return self._backoff_skip() if waited else None
            if self.lock.try_claim_probe(claim):
                if self._probe_due():  # under the claim: a probe may have ended just now
                    self.probing, self.probe_claim = True, claim
                    logger.info(
                        "%s: quota %r reset since its last backoff: one probe call first",
                        self.name, self.quota_key,
                    )
                    return None
                self.lock.release_probe(claim)
                continue
            if not waited:
                waited = True
                prober = probe_holder(claim)
                logger.info("%s: holds for the probe of quota %r (%s)", self.name, claim, prober)
                record_probe_wait(
                    drain=self.name, quota_key=self.quota_key, prober=prober, actor=self.actor
                )
            time.sleep(PROBE_POLL_SECONDS)
        return self._skip(
            StopReason.PROBE_WAIT,
            f"{self.name}: quota {self.quota_key!r} is still being probed after its reset by "
            f"another drain ({settings.DRAINS_PROBE_WAIT_SECONDS:g} s waited); no extractor call.",
        )

    def _probe_due(self) -> bool:
        evidence = selectors.probe_evidence(drain=self.name, quota_key=self.quota_key)
        return policy.probe_due(
            backoff_until=evidence.backoff_until,
            last_success_at=evidence.last_success_at,
            now=timezone.now(),
        )

    def _release_probe(self) -> None:
        """Release the quota's probe claim (after the probe's outcome, or at the run's end)."""
        self.probing = False
        claim, self.probe_claim = self.probe_claim, None
        if claim is not None:
            self.lock.release_probe(claim)
