"""Item state for tests: decisions in a given state of a drain, through the framework's own
table (drains/items.py), as a run would leave them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from drains import registry
from drains.models import Item


def sync_all() -> None:
    """Queue every row written without a save (bulk_create) for every registered drain."""
    for cls in registry.classes():
        cls.sync()


def set_state(drain: str, rows: Iterable[Any], status: str, *, attempts: int = 0,
              last_error: str = "", done_at=None) -> None:
    """Put ``rows`` (instances or primary keys) of ``drain`` in ``status``."""
    sync_all()
    refs = [getattr(row, "pk", row) for row in rows]
    if status == "done" and done_at is None:
        done_at = timezone.now()
    Item.objects.filter(drain=drain, ref__in=refs).update(
        status=status, attempts=attempts, last_error=last_error,
        done_at=done_at if status == "done" else None, updated_at=timezone.now())


def state(drain: str, row: Any) -> tuple[str, int, str]:
    """(status, attempts, last error) of ``row`` in ``drain``."""
    item = Item.objects.get(drain=drain, ref=getattr(row, "pk", row))
    return item.status, item.attempts, item.last_error


def statuses(drain: str = "halacha") -> list[str]:
    """Every item's status in ``drain``, in item order."""
    return list(Item.objects.filter(drain=drain).order_by("ref").values_list("status", flat=True))


def count(drain: str = "halacha", **filters: Any) -> int:
    return Item.objects.filter(drain=drain, **filters).count()


def copy_items(source: str, target: str) -> None:
    """Give drain ``target`` the same items, in the same states, as ``source``."""
    Item.objects.bulk_create([
        Item(drain=target, ref=i.ref, status=i.status, attempts=i.attempts,
             last_error=i.last_error, version=i.version, arrived_at=i.arrived_at,
             done_at=i.done_at, updated_at=i.updated_at)
        for i in Item.objects.filter(drain=source)])


def states(drain: str = "halacha") -> set[tuple[int, str]]:
    """Every item's (attempts, status) in ``drain``, as a set."""
    return set(Item.objects.filter(drain=drain).values_list("attempts", "status"))
