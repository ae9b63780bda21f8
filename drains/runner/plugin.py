"""The drain plugin API: what a drain class says about its work (``Drain``), what its
``process`` returns (``Processed``) and how it reports an item-level failure (``ItemFailed``) or
a fault that is no item's (``HostFault``).

A drain class registered in ``drains.registry`` fills in the hooks; the runner
(drains/runner/run.py) owns everything else. A drain never reads the environment and never
decides when to stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.utils import timezone

from drains.quota.kinds import Kind, LimitKind
from drains.quota.policy import HOST_PROBE_FIRST
from drains.quota.resets import RateLimited
from drains.quota.signals import QuotaSignal


class ItemFailed(Exception):
    """Processing one item failed for a reason other than a rate limit; the run goes on.

    A drain's ``process`` raises it (wrapping its extractor's error). ``raw`` and ``usage`` are
    set when the call was paid for but its reply was unusable: the runtime records both.
    """

    def __init__(
        self,
        message: str,
        *,
        raw: Any = None,
        usage: Mapping[str, Any] | None = None,
        quota: QuotaSignal | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.raw = raw
        self.usage = usage or {}
        self.quota = quota  # the failed call's QuotaSignal (drains/quota/signals.py), if any

class HostFault(RateLimited):
    """Not the item's fault: the host's or the service's. The extractor could not start (a
    missing or non-executable binary), the API could not be reached, it refused the credentials
    (401/403, the CLI's "Not logged in"), it failed with a 5xx after its own retries, the CLI was
    killed by a signal from outside (the OOM killer, ``kill -9``), the host had no memory or
    processes left to start it.

    Charged to no item: the run stops at once, the item goes back untouched, and the drain, with
    every drain on its quota, is blocked (a backoff of kind ``host_fault``) until a probe call
    works; the runner sets when that probe is due (``policy.host_probe_interval``). ``advice``
    says what an operator can do about it.
    """

    def __init__(self, message: str, *, advice: str = "") -> None:
        self.fault = message
        self.advice = advice
        reason = f"{message} (what to do: {advice})" if advice else message
        super().__init__(timezone.now() + HOST_PROBE_FIRST, reason)
        self.kind = Kind(LimitKind.HOST_FAULT)
        self.breaker = False  # set by the runner's breaker: the probe must go through to lift it
        self.args = (f"blocked by a host fault: {reason}",)


@dataclass(frozen=True)
class FailedItem:
    """An item failed for good: its key, a label for people, attempts, last error and when."""

    key: str
    label: str
    attempts: int
    error: str
    at: Any


@dataclass
class Processed:
    """What ``Drain.process`` returns: a JSON-able payload to stage, and the call's usage."""

    payload: Any
    usage: Mapping[str, Any] | None = None
    quota: QuotaSignal | None = None  # the call's QuotaSignal (drains/quota/signals.py): the runner records it


class Drain:
    """Base class of a drain: subclass, set ``name``, fill in the five hooks, register it.

    ``pending_queryset`` (items to do, in primary-key order), ``make_extractor``, ``process``
    (one extractor call → ``Processed``; raise ``ItemFailed`` for an item-level failure, let
    ``RateLimited`` through), ``promote`` (payload → domain rows, inside the caller's
    transaction; must be idempotent and must not need an extractor) and ``mark_failed``. The
    default item key is the primary key as text; override ``select_pending``/``item_key``/
    ``item_cursor`` for another order.
    """

    name: ClassVar[str] = ""
    command: ClassVar[str] = ""  # the management command that runs it; default drain_<name>
    # The item field that says when it arrived (None: unknown): the snapshot reads the oldest
    # pending item's age from it, in the backlog statement.
    arrived_at_field: ClassVar[str | None] = None
    # What ``produced_between`` counts, singular and plural, for a run's last line.
    product_names: ClassVar[tuple[str, str]] = ("row", "rows")
    # The breaker (drains/runner/loop.py): this many items in a row failing with the same error
    # stop the run and block the drain; 0 turns it off.
    breaker_failures: ClassVar[int] = 5

    def __init__(self) -> None:
        self._extractor: Any = None

    @classmethod
    def command_name(cls) -> str:
        return cls.command or f"drain_{cls.name}"

    # --- the backlog ---------------------------------------------------------------------
    @classmethod
    def pending_queryset(cls) -> QuerySet[Any]:
        raise NotImplementedError(f"{cls.__name__}.pending_queryset()")

    @classmethod
    def pending_count(cls) -> int:
        return cls.pending_queryset().count()

    @classmethod
    def backlog_counts(cls) -> dict[str, int]:
        return {"pending": cls.pending_count()}

    # --- the digest (optional) --------------------------------------------------------------
    @classmethod
    def done_between(cls, since: datetime, until: datetime) -> int | None:
        """Items finished in [since, until), counted from the items themselves; None: the
        digest sums its runs' ``items_done`` instead."""
        return None

    @classmethod
    def produced_between(cls, since: datetime, until: datetime) -> int | None:
        """How many of its product (``product_names``) the drain made in [since, until); None
        when it makes none of its own. Usage, the digest, the metrics and the page count it."""
        return None

    def select_pending(self, *, after: Any, limit: int) -> list[Any]:
        """The next ``limit`` pending items after the cursor ``after`` (None: from the start)."""
        items = self.pending_queryset()
        if after is not None:
            items = items.filter(pk__gt=after)
        return list(items.order_by("pk")[:limit])

    def item_key(self, item: Any) -> str:
        return str(item.pk)

    def item_cursor(self, item: Any) -> Any:
        return item.pk

    # --- the paid part ---------------------------------------------------------------------
    def make_extractor(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.make_extractor()")

    @property
    def extractor(self) -> Any:
        if self._extractor is None:
            self._extractor = self.make_extractor()
        return self._extractor

    def quota_key(self) -> str:
        """The quota the extractor draws on: a rate limit backs off every drain sharing it."""
        quota_key = getattr(self.extractor, "quota_key", None)
        return str(quota_key() if callable(quota_key) else self.extractor.__class__.__name__)

    def process(self, item: Any) -> Processed:
        raise NotImplementedError(f"{type(self).__name__}.process()")

    # --- persistence (classmethods: no extractor needed) ----------------------------------
    @classmethod
    def promote(cls, item_key: str, payload: Any) -> bool:
        """Write ``payload`` as domain rows; False when the item needs nothing (already done)."""
        raise NotImplementedError(f"{cls.__name__}.promote()")

    @classmethod
    def mark_failed(cls, item_key: str, error: str, *, max_attempts: int) -> None:
        """Count a failed attempt; after ``max_attempts`` the item is failed for good."""
        raise NotImplementedError(f"{cls.__name__}.mark_failed()")

    # --- failed items (optional: the operations page lists them and retries them) ------------
    @classmethod
    def failed_items(cls, *, limit: int) -> list[FailedItem]:
        """Items failed for good, most recent first (at most ``limit``)."""
        return []

    @classmethod
    def failed_count(cls) -> int:
        return 0

    @classmethod
    def retry_failed(cls, item_keys: list[str] | None) -> list[str]:
        """Put failed items (``None``: all) back in the backlog with their attempts reset;
        returns the keys that moved. Only drains/retries.py calls it (it audits the change)."""
        return []

    @classmethod
    def extractor_label(cls) -> str:
        """The extractor and model configured now, from settings alone (no extractor is built):
        a run records it, and the projection measures only runs with the same label."""
        return ""

    @classmethod
    def first_item_at(cls) -> datetime | None:
        """When the first item arrived (None: unknown): the burn-down starts there."""
        return None

    @classmethod
    def oldest_pending_at(cls) -> datetime | None:
        """When the oldest pending item arrived (None: unknown or nothing pending)."""
        return None
