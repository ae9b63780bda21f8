"""Retrying failed items: the one write path that puts items failed for good back in a drain's
backlog with their attempts reset (the drain's ``retry_failed`` hook), audited with a
``retried`` event naming the operator. Repeated, it finds nothing failed and writes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from drains import registry
from drains.events import record_event
from drains.models import EventKind
from drains.wording import plural

MAX_KEYS_IN_EVENT = 50


@dataclass(frozen=True)
class Retried:
    name: str
    keys: list[str]

    @property
    def message(self) -> str:
        if not self.keys:
            return f"{self.name}: no failed item to retry"
        return f"{self.name}: {plural(len(self.keys), 'failed item')} back in the backlog"


def retry_failed_items(*, name: str, item_keys: list[str] | None, actor: str) -> Retried:
    """Retry ``item_keys`` (None: every failed item) of drain ``name``."""
    drain = registry.get(name)
    keys = drain.retry_failed(item_keys)
    result = Retried(name, keys)
    if keys:
        shown = ", ".join(keys[:MAX_KEYS_IN_EVENT]) + (" …" if len(keys) > MAX_KEYS_IN_EVENT else "")
        record_event(drain=name, kind=EventKind.RETRIED, actor=actor,
                     message=f"{plural(len(keys), 'failed item')} set to retry, attempts reset: "
                     f"{shown}",
                     data={"items": keys[:1000], "count": len(keys), "all": item_keys is None})
    return result
