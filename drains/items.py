"""Item state: which of a drain's items are pending, done or failed, their attempts, last error
and when. The framework owns it, in one table (``drains.Item``, keyed by drain and item); a
drain only declares its ``Source``: which domain rows are its items and which field of theirs
makes a finished item stale again.

How items come to be:

* **Saved through the ORM** (``save()``, ``objects.create()``, the admin, the importer): a
  ``post_save`` handler queues the row for every drain whose source it is, in the same
  transaction, and queues it again (pending, attempts 0) when its version field changed.
  A deleted row's items are deleted with it (``post_delete``).
* **Written without a save** (``bulk_create``, SQL): ``sync`` queues every source row past the
  drain's own sync mark (``ItemSync``; on its first sync, every row). A run calls it before it
  counts its backlog, and so does the supervisor before it starts one in a burst. (A row given
  an id below the mark by a bulk insert that commits after a later sync is not queued: write
  a source's rows through the ORM, or in id order.)

A ``Source``'s ``where`` is checked when a row is saved new or with a new version: a row that
comes to match it later is not queued by a save (``sync`` queues it if it is past the mark).

An item's key is its source row's primary key as text (an integer: ``ref``). Nothing here reads
a drain's domain rows except to find its items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, Count, F, Min, Model, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from drains.models import Item, ItemStatus, ItemSync

LAST_ERROR_MAX_CHARS = 4000
# The key under which a staged payload keeps the version of the item its call was made on: a
# result for a version the item no longer has is never promoted (the item is worked again).
VERSION_KEY = "_item_version"
VERSION_MAX_CHARS = 128  # Item.version
_TABLE = Item._meta.db_table
_SYNC_TABLE = ItemSync._meta.db_table
_SMALLEST_REF = -(2**63)


@dataclass(frozen=True)
class Source:
    """Which domain rows are a drain's items.

    ``model``: every row of it is an item (its primary key must be an integer; items are worked
    in its order). ``version_field``: a finished item whose row's value of it changes is pending
    again, attempts 0 (e.g. a decision whose text changed). ``label_field``: what the page shows
    for a failed item. ``where``: only the rows it matches are items (None: every row).
    """

    model: type[Model]
    version_field: str | None = None
    label_field: str = "pk"
    where: Q | None = None

    def __post_init__(self) -> None:
        if self.version_field is not None:
            field = self.model._meta.get_field(self.version_field)
            if field.get_internal_type() not in ("CharField", "TextField", "SlugField"):
                raise TypeError(
                    f"{self.model.__name__}.{self.version_field} is a "
                    f"{field.get_internal_type()}: a version field must be text (a digest, a "
                    "revision id), read the same way in Python and in SQL")

    def rows(self) -> QuerySet[Any]:
        """The source rows that are items."""
        rows = self.model._default_manager.all()
        return rows if self.where is None else rows.filter(self.where)

    def holds(self, row: Any) -> bool:
        """Whether ``row`` is one of the items (one query, only when ``where`` is set)."""
        return self.where is None or self.rows().filter(pk=row.pk).exists()

    def version_of(self, row: Any) -> str:
        if self.version_field is None:
            return ""
        return str(getattr(row, self.version_field) or "")[:VERSION_MAX_CHARS]


@dataclass(frozen=True)
class FailedItem:
    """An item failed for good: its key, a label for people, attempts, last error and when."""

    key: str
    label: str
    attempts: int
    error: str
    at: datetime


def _refs(keys: Iterable[str]) -> list[int]:
    """Item keys as primary keys; a key that is no integer matches no item (not an error)."""
    return [int(k) for k in keys if k.isascii() and k.isdigit() and len(k) <= 18]


# --- queueing ------------------------------------------------------------------------------------

# Queue rows (new: pending) and queue again those whose version changed; nothing else moves.
_UPSERT_SQL = (
    f"INSERT INTO {_TABLE} AS i (drain, ref, status, attempts, last_error, version, arrived_at, "
    "updated_at) SELECT %s, r.ref, 'pending', 0, '', r.version, %s, %s "
    "FROM unnest(%s::bigint[], %s::text[]) AS r(ref, version) "
    "ON CONFLICT (drain, ref) DO UPDATE SET status = 'pending', attempts = 0, last_error = '', "
    "done_at = NULL, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at "
    "WHERE i.version IS DISTINCT FROM EXCLUDED.version"
)


def queue(drain: str, source: Source, rows: Iterable[Any]) -> None:
    """Queue ``rows`` (source instances) for ``drain``: new ones pending; those whose version
    changed pending again with attempts 0. Runs in the caller's transaction."""
    rows = list(rows)
    if not rows:
        return
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_SQL, [drain, now, now, [row.pk for row in rows],
                                     [source.version_of(row) for row in rows]])


SYNC_BATCH = 20_000
"""Source rows queued per statement by ``sync``: a first sync of a large table is many short
statements (each well inside the runner's statement timeout), not one long one."""


def sync(drain_cls: Any) -> int:
    """Queue every source row past the drain's sync mark (``ItemSync``: rows written without a
    save, e.g. ``bulk_create``; on a drain's first sync, every row of its source), in batches;
    returns how many were queued. Rows saved through the ORM were queued when saved, so the
    mark is the sync's own, never the highest item: a drain added to a table that has rows
    gets all of them. One statement per batch (the batch, its items and the mark moved past
    it); an index range scan on the source past the mark, so one statement when nothing is new.
    """
    source: Source = drain_cls.source
    mark = ItemSync.objects.filter(drain=drain_cls.name).values("through")
    version = F(source.version_field) if source.version_field else Value("")
    queued = 0
    while True:
        rows = (source.rows().filter(pk__gt=Coalesce(Subquery(mark), Value(_SMALLEST_REF)))
                .order_by("pk")[:SYNC_BATCH])
        select, params = rows.values_list("pk", version).query.sql_with_params()
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH batch AS ({select}), queued AS ("
                f"INSERT INTO {_TABLE} (drain, ref, status, attempts, last_error, version, "
                "arrived_at, updated_at) SELECT %s, b.ref, 'pending', 0, '', "
                f"left(coalesce(b.version::text, ''), {VERSION_MAX_CHARS}), %s, %s "
                "FROM batch AS b(ref, version) ON CONFLICT (drain, ref) DO NOTHING RETURNING 1), "
                f"marked AS (INSERT INTO {_SYNC_TABLE} AS m (drain, through, synced_at) "
                "SELECT %s, coalesce(max(b.ref), 0), %s FROM batch AS b(ref, version) "
                "ON CONFLICT (drain) DO UPDATE SET through = greatest(m.through, "
                "EXCLUDED.through), synced_at = EXCLUDED.synced_at RETURNING 1) "
                "SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM queued), "
                "(SELECT count(*) FROM marked)",
                [*params, drain_cls.name, now, now, drain_cls.name, now],
            )
            seen, added, _ = cursor.fetchone()
        queued += int(added)
        if seen < SYNC_BATCH:
            return queued


def watch(model: type[Model], drains: Callable[[], Iterable[Any]]) -> None:
    """Keep ``model``'s rows queued for the drains whose source it is: ``drains()`` lists the
    registered drain classes (drains/registry.py calls this when it registers one)."""

    def drains_of() -> list[Any]:
        return [cls for cls in drains() if cls.source.model is model]

    def saved(sender: type[Model], instance: Any, created: bool,
              update_fields: frozenset[str] | None, **_: Any) -> None:
        for cls in drains_of():
            field = cls.source.version_field
            if created or update_fields is None or (field and field in update_fields):
                if cls.source.holds(instance):
                    queue(cls.name, cls.source, [instance])

    def deleted(sender: type[Model], instance: Any, **_: Any) -> None:
        names = [cls.name for cls in drains_of()]
        if names:
            Item.objects.filter(drain__in=names, ref=instance.pk).delete()

    uid = f"drains.items:{model._meta.label}"
    post_save.connect(saved, sender=model, dispatch_uid=uid, weak=False)
    post_delete.connect(deleted, sender=model, dispatch_uid=uid, weak=False)


# --- the runner's side ---------------------------------------------------------------------------


def next_pending(drain_cls: Any, *, after: int | None, limit: int) -> list[Any]:
    """The next ``limit`` pending items after ``after`` (a ref; None: from the start), as source
    rows in ref order: one plain statement, the pending refs a subquery on the partial index.
    (The hot path of every chunk: no ORM query to compile.) An item whose row is gone (deleted
    without a signal) is dropped when a short chunk shows it."""
    model = drain_cls.source.model
    pk = connection.ops.quote_name(model._meta.pk.column)
    sql = (f"SELECT * FROM {connection.ops.quote_name(model._meta.db_table)} WHERE {pk} IN "
           f"(SELECT ref FROM {_TABLE} WHERE drain = %s AND status = 'pending' AND ref > %s "
           f"ORDER BY ref LIMIT %s) ORDER BY {pk}")
    start = _SMALLEST_REF if after is None else after
    while True:
        rows = list(model._default_manager.raw(sql, [drain_cls.name, start, limit]))
        if len(rows) == limit:
            return rows
        # A short chunk: drop the pending items past the cursor whose row is gone (deleted
        # without a signal), deciding and deleting in one statement; if any was, read again.
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {_TABLE} i WHERE i.drain = %s AND i.status = 'pending' "
                f"AND i.ref > %s AND NOT EXISTS (SELECT 1 FROM "
                f"{connection.ops.quote_name(model._meta.db_table)} s WHERE s.{pk} = i.ref)",
                [drain_cls.name, start])
            if not cursor.rowcount:
                return rows


_FINISH_SQL = (
    # The source row first (KEY SHARE: a writer holding it, e.g. the importer, goes first), then
    # the item: the order every writer of both takes, so a promotion never deadlocks with them.
    "source AS (SELECT 1 FROM {source} WHERE {pk} = %s FOR KEY SHARE), "
    f"done AS (UPDATE {_TABLE} SET status = 'done', done_at = %s, last_error = '', "
    "updated_at = %s WHERE drain = %s AND ref = %s AND status <> 'done' "
    "AND EXISTS (SELECT 1 FROM source){after} RETURNING 1)"
)


def finish_ctes(drain_cls: Any, key: str, *, after: str = "",
                payload: Any = None) -> tuple[str, list[Any]]:
    """The item marked done, as two common table expressions, ``source`` and ``done`` (a row per
    item marked), for a caller's statement (drains/staging.py's promotion); nothing is marked
    when the item already was done, or when its source row is gone; with ``after`` (the name of another CTE of it) the item
    is marked only when that CTE returned a row (staging: only when its staged row was removed).
    A ``payload`` stamped with the version its call was made on (``stamped``) marks the item only
    while it still has that version.
    """
    refs = _refs([key])
    ref = refs[0] if refs else None  # no such item: nothing is marked
    model = drain_cls.source.model
    version = payload.get(VERSION_KEY) if isinstance(payload, dict) else None
    sql = _FINISH_SQL.format(source=connection.ops.quote_name(model._meta.db_table),
                             pk=connection.ops.quote_name(model._meta.pk.column),
                             after=(f" AND EXISTS (SELECT 1 FROM {after})" if after else "")
                             + (" AND version = %s" if version is not None else ""))
    now = timezone.now()
    return sql, [ref, now, now, drain_cls.name, ref,
                 *([str(version)] if version is not None else [])]


def stamped(drain_cls: Any, item: Any, payload: Any) -> Any:
    """``payload`` with the version of ``item`` its call was made on (a drain whose source has
    a version field and whose payload is a JSON object), for ``finish_ctes``."""
    if drain_cls.source.version_field is None or not isinstance(payload, dict):
        return payload
    return {**payload, VERSION_KEY: drain_cls.source.version_of(item)}


def fail(drain: str, key: str, error: str, *, max_attempts: int) -> None:
    """Count a failed attempt and keep its error; failed for good once attempts reach
    ``max_attempts``. A done item is left alone."""
    Item.objects.filter(drain=drain, ref__in=_refs([key])).exclude(
        status=ItemStatus.DONE
    ).update(
        attempts=F("attempts") + 1,
        last_error=error[:LAST_ERROR_MAX_CHARS],
        status=Case(When(attempts__gte=max_attempts - 1, then=Value(ItemStatus.FAILED)),
                    default=Value(ItemStatus.PENDING)),
        updated_at=timezone.now(),
    )


def retry(drain: str, keys: list[str] | None) -> list[str]:
    """Failed items (``None``: all) pending again with attempts 0; the keys that moved. Only
    drains/retries.py calls it (it audits the change)."""
    failed = Item.objects.filter(drain=drain, status=ItemStatus.FAILED)
    if keys is not None:
        failed = failed.filter(ref__in=_refs(keys))
    with transaction.atomic():
        refs = list(failed.select_for_update().values_list("ref", flat=True))
        Item.objects.filter(drain=drain, ref__in=refs).update(
            status=ItemStatus.PENDING, attempts=0, updated_at=timezone.now())
    return [str(ref) for ref in refs]


# --- reads ---------------------------------------------------------------------------------------


def counts(drain: str) -> dict[str, int]:
    found = {"pending": 0, "done": 0, "failed": 0}
    rows = Item.objects.filter(drain=drain).values("status").annotate(n=Count("id")).order_by()
    found.update({row["status"]: row["n"] for row in rows})
    return found


def pending_count(drain: str) -> int:
    return Item.objects.filter(drain=drain, status=ItemStatus.PENDING).count()


def failed(drain_cls: Any, *, limit: int) -> list[FailedItem]:
    """Items failed for good, most recent first (at most ``limit``), labelled from the source."""
    rows = list(Item.objects.filter(drain=drain_cls.name, status=ItemStatus.FAILED)
                .order_by("-updated_at", "-ref")[:limit])
    field = drain_cls.source.label_field
    labels = dict(drain_cls.source.model._default_manager.filter(
        pk__in=[row.ref for row in rows]).values_list("pk", field))
    return [FailedItem(key=str(row.ref), label=str(labels.get(row.ref, row.ref)),
                       attempts=row.attempts, error=row.last_error, at=row.updated_at)
            for row in rows]


def failed_count(drain: str) -> int:
    return Item.objects.filter(drain=drain, status=ItemStatus.FAILED).count()


def first_arrived(drain: str) -> datetime | None:
    first: datetime | None = Item.objects.filter(drain=drain).aggregate(
        first=Min("arrived_at"))["first"]
    return first


def oldest_pending(drain: str) -> datetime | None:
    """When the first pending item (in the order items are worked: the order they arrive)
    arrived; one index probe."""
    return Item.objects.filter(drain=drain, status=ItemStatus.PENDING).order_by("ref").values_list(
        "arrived_at", flat=True).first()


def done_between(drain: str, since: datetime, until: datetime) -> int:
    return Item.objects.filter(drain=drain, status=ItemStatus.DONE, done_at__gte=since,
                               done_at__lt=until).count()
