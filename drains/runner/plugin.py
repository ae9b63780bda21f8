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
from typing import Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar

from django.db import models
from django.utils import timezone

from drains import items
from drains.items import FailedItem, Source
from drains.quota.kinds import Kind, LimitKind
from drains.quota.policy import HOST_PROBE_FIRST
from drains.quota.resets import RateLimited
from drains.quota.signals import QuotaSignal

__all__ = ["AnyDrain", "Drain", "FailedItem", "HostFault", "ItemFailed", "ModelBackend",
           "Processed", "Source"]


class ItemFailed(Exception):
    """Processing one item failed for a reason other than a rate limit; the run goes on.

    A drain's ``process`` raises it (wrapping its extractor's error). ``raw`` and ``usage`` are
    set when the call was paid for but its reply was unusable: the runtime records both.
    """

    def __init__(
        self,
        message: str,
        *,
        raw: object = None,
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


#: A payload: what ``process`` stages and ``promote`` writes, JSON-able (a drain names its own
#: TypedDict); staged as JSON, it comes back to ``promote`` as the same mapping.
PayloadT = TypeVar("PayloadT", bound=Mapping[str, object])


@dataclass
class Processed(Generic[PayloadT]):
    """What ``Drain.process`` returns: a JSON-able payload to stage, and the call's usage."""

    payload: PayloadT
    usage: Mapping[str, Any] | None = None
    quota: QuotaSignal | None = None  # the call's QuotaSignal (drains/quota/signals.py): the runner records it


class ModelBackend(Protocol):
    """What the framework asks of a drain's backend (``make_extractor``): which quota it draws
    on, so that a rate limit backs off every drain sharing it. The call itself is the drain's."""

    def quota_key(self) -> str:
        """The quota (an API key's, a CLI account's) the backend's calls spend."""
        ...


ItemT = TypeVar("ItemT", bound=models.Model)  # an item: a row of the drain's source model
BackendT = TypeVar("BackendT", bound=ModelBackend)  # the backend its calls go through


class Drain(Generic[ItemT, PayloadT, BackendT]):
    """Base class of a drain: subclass it as ``Drain[Item, Payload, Backend]`` (its source
    model, its payload's TypedDict, its backend class), set ``name`` and ``source``, fill in the
    hooks, register it (``drains.registry.register``). Every hook a drain must or may fill is
    here, typed by those three: mypy checks a drain's hooks against them.

    Must: ``name`` (the drain's name), ``source`` (which rows are its items), ``make_extractor``
    (the backend its calls go through), ``process`` (one item → one paid call → ``Processed``),
    ``promote`` (a payload → domain rows). May: ``schedule``, ``command``, ``product_names``,
    ``produced_between``, ``extractor_label``, ``breaker_failures``, ``max_attempts``,
    ``on_demand``.

    The framework owns the items' state (drains/items.py): pending, done, failed, attempts, the
    last error, retry, the counts. The classmethods below the hooks read it for everyone.
    """

    name: ClassVar[str] = ""
    # Which domain rows are the drain's items, and what makes a done item stale again.
    source: ClassVar[Source]
    # Its cron slot: five fields, in minutes no other job uses (``manage.py check`` says when two
    # meet). CRONJOBS, ``manage.py schedule``, the page and run_scheduler read it; None: started
    # only by bursts, the supervisor and operators.
    schedule: ClassVar[str | None] = None
    # A management command of its own that runs it; "" (the default): ``manage.py drain NAME``.
    command: ClassVar[str] = ""
    # What ``produced_between`` counts, singular and plural, for usage, the digest and the page.
    product_names: ClassVar[tuple[str, str]] = ("row", "rows")
    # The breaker (drains/runner/loop.py): this many items in a row failing with the same error
    # stop the run and block the drain; 0 turns it off.
    breaker_failures: ClassVar[int] = 5
    # Attempts before an item is failed for good (None: DRAINS_MAX_ATTEMPTS).
    max_attempts: ClassVar[int | None] = None
    # Run only when asked (``manage.py evaluate``): the quota autopilot never starts a burst on it.
    on_demand: ClassVar[bool] = False

    def __init__(self) -> None:
        self._extractor: BackendT | None = None

    # --- hooks -------------------------------------------------------------------------------
    def make_extractor(self) -> BackendT:
        """The backend the drain's calls go through (built once per run, on first use)."""
        raise NotImplementedError(f"{type(self).__name__}.make_extractor()")

    def process(self, item: ItemT) -> Processed[PayloadT]:
        """One source row → one paid call → its payload; raise ``ItemFailed`` for the item's
        own failure, let ``RateLimited``/``HostFault`` through."""
        raise NotImplementedError(f"{type(self).__name__}.process()")

    @classmethod
    def promote(cls, item_key: str, payload: PayloadT) -> None:
        """Write ``payload`` as domain rows, inside the transaction that marks the item done,
        replacing what an earlier version of the item wrote (an item whose version changed is
        worked again); never called for an item already done, and needs no extractor."""
        raise NotImplementedError(f"{cls.__name__}.promote()")

    @classmethod
    def produced_between(cls, since: datetime, until: datetime) -> int | None:
        """How many of its product (``product_names``) the drain made in [since, until); None
        when it makes none of its own. Usage, the digest, the metrics and the page count it."""
        return None

    @classmethod
    def extractor_label(cls) -> str:
        """The extractor and model configured now, from settings alone (no extractor is built):
        a run records it, and the projection measures only runs with the same label."""
        return ""

    # --- the framework's -----------------------------------------------------------------------
    @classmethod
    def command_line(cls) -> list[str]:
        """The ``manage.py`` words that run it: its own command, else ``drain NAME``."""
        return [cls.command] if cls.command else ["drain", cls.name]

    @property
    def extractor(self) -> BackendT:
        """The backend, built on first use: what ``make_extractor`` returned."""
        if self._extractor is None:
            self._extractor = self.make_extractor()
        return self._extractor

    def quota_key(self) -> str:
        """The quota the extractor draws on: a rate limit backs off every drain sharing it."""
        return str(self.extractor.quota_key())

    def select_pending(self, *, after: int | None, limit: int) -> list[ItemT]:
        """The next ``limit`` pending items (source rows) after the cursor ``after``."""
        return items.next_pending(type(self), after=after, limit=limit)

    def item_key(self, item: ItemT) -> str:
        return str(item.pk)

    def item_cursor(self, item: ItemT) -> int:
        return int(item.pk)

    @classmethod
    def sync(cls) -> int:
        return items.sync(cls)

    @classmethod
    def pending_count(cls) -> int:
        return items.pending_count(cls.name)

    @classmethod
    def backlog_counts(cls) -> dict[str, int]:
        return items.counts(cls.name)

    @classmethod
    def mark_failed(cls, item_key: str, error: str, *, max_attempts: int) -> None:
        items.fail(cls.name, item_key, error, max_attempts=max_attempts)

    @classmethod
    def failed_items(cls, *, limit: int) -> list[FailedItem]:
        return items.failed(cls, limit=limit)

    @classmethod
    def failed_count(cls) -> int:
        return items.failed_count(cls.name)

    @classmethod
    def retry_failed(cls, item_keys: list[str] | None) -> list[str]:
        return items.retry(cls.name, item_keys)

    @classmethod
    def done_between(cls, since: datetime, until: datetime) -> int:
        return items.done_between(cls.name, since, until)

    @classmethod
    def first_item_at(cls) -> datetime | None:
        return items.first_arrived(cls.name)

    @classmethod
    def oldest_pending_at(cls) -> datetime | None:
        return items.oldest_pending(cls.name)


#: Any drain, as the framework sees it: it runs every drain's items and payloads without
#: knowing their types (each drain's own hooks are checked against its own).
AnyDrain: TypeAlias = Drain[Any, Any, Any]
