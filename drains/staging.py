"""Staging and promotion ("paid once", docs/architecture.md): the only code that writes
StagedResult, and the replay of this host's journal of paid results into staging.

``stage_result`` commits the raw extractor response in its own transaction the moment it
arrives; ``promote_staged`` turns it into domain rows through the drain class's
``promote(item_key, payload)``, marks the item done (drains/items.py) and deletes the staged row
in one transaction, and is a no-op when the row is already gone or the item already done — so
a promotion repeated after a crash never duplicates anything. A
run promoting its own result is fenced: only while it is still running. Zero quota: nothing here
imports or constructs an extractor.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from drains import items, registry
from drains.journal import Journal
from drains.models import DrainRun, RunStatus, StagedResult
from drains.runs import UNFINISHED, Usage, correct_run_counts

ERROR_MAX_CHARS = 4000


class RunSuperseded(RuntimeError):
    """The run is no longer its drain's current run (the supervisor marked it hung or crashed,
    here or on another host): it must promote nothing more. What it staged stays staged, for
    whoever finds it to promote once."""


class PromotionError(RuntimeError):
    """A staged result could not be promoted; the staged row is kept (nothing is lost)."""

    def __init__(self, drain: str, item_key: str, cause: BaseException):
        self.drain = drain
        self.item_key = item_key
        self.cause = cause
        super().__init__(
            f"promoting the staged {drain} result for item {item_key} failed: "
            f"{type(cause).__name__}: {cause}. The staged row is kept; fix the cause and the next "
            "run (or the supervisor) promotes it."
        )


_STAGE_SQL = (
    f"INSERT INTO {StagedResult._meta.db_table} "
    "(drain, item_key, run_id, payload, created_at, promote_attempts, promote_error) "
    "VALUES (%s, %s, %s, %s::jsonb, %s, 0, '') "
    "ON CONFLICT (drain, item_key) DO NOTHING RETURNING id"
)


# In one statement: the staged row removed and the item marked done (drains/items.py
# ``finish_ctes``: only when the row was removed). A promotion by a run is fenced: its run row is
# locked (FOR SHARE, so the supervisor's status change waits for this transaction) and checked to
# still be running, and only then is anything removed or marked. A conditional write, never a
# read and then a write. Returns (the run still running, the row removed, the item marked).
_UNSTAGE_SQL = (
    "WITH fence AS ({fence}), "
    f"gone AS (DELETE FROM {StagedResult._meta.db_table} WHERE drain = %s AND item_key = %s "
    "AND EXISTS (SELECT 1 FROM fence) RETURNING 1), {done} "
    "SELECT (SELECT count(*) FROM fence), (SELECT count(*) FROM gone), (SELECT count(*) FROM done)"
)
_FENCE = f"SELECT id FROM {DrainRun._meta.db_table} WHERE id = %s AND status = %s FOR SHARE"
_NO_FENCE = "SELECT 1"


def stage_result(*, drain: str, item_key: str, payload: Any, run: DrainRun | None = None) -> bool:
    """Commit an extractor response at once, in its own transaction (never inside another).

    Returns False when the item already had a staged row: the earlier (also paid-for) result is
    kept and is the one promoted. Values that JSON cannot hold are stored as their ``str()``.
    """
    _require_own_commit("stage_result")
    body = json.dumps(payload, ensure_ascii=False, default=str)
    # One statement in autocommit mode is its own transaction: committed when execute returns,
    # at one round trip (an atomic block would add BEGIN and COMMIT round trips per item).
    with connection.cursor() as cursor:
        cursor.execute(_STAGE_SQL, [drain, item_key, run.pk if run else None, body, timezone.now()])
        return cursor.fetchone() is not None


def _require_own_commit(what: str) -> None:
    """Refuse to run inside someone's transaction: a rollback there would lose a paid result.

    The same rule as ``atomic(durable=True)``: the atomic blocks Django's TestCase opens around
    a test do not count.
    """
    if any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
        raise RuntimeError(f"{what} must commit on its own: call it outside transaction.atomic()")


def promote_staged(
    *, drain: str, item_key: str, payload: Any = None, run: DrainRun | None = None
) -> bool:
    """Promote one staged result: domain rows + staged-row removal, in one transaction.

    ``payload`` may be passed by a caller that holds it (the runtime, right after staging) to
    save reading it back. Returns False when there was nothing to promote (already promoted, or
    the item was done already). Raises ``PromotionError`` after
    recording the failure on the staged row, which is kept.

    With ``run`` (a run promoting its own result) the promotion is fenced: it happens only while
    that run is still ``running``, else ``RunSuperseded`` is raised and nothing is promoted.
    """
    drain_cls = registry.get(drain)
    try:
        with transaction.atomic(durable=True):
            if payload is None:
                row = (
                    StagedResult.objects.filter(drain=drain, item_key=item_key)
                    .select_for_update(skip_locked=True)
                    .only("payload")
                    .first()
                )
                if row is None:
                    return False
                payload = row.payload
            # Deleting the row first makes a concurrent or repeated promotion a no-op; the item
            # already done (or its source row gone) is never written twice.
            done, done_params = items.finish_ctes(drain_cls, item_key, after="gone",
                                                  payload=payload)
            fence_params: list[Any]
            fence, fence_params = ((_NO_FENCE, []) if run is None
                                   else (_FENCE, [run.pk, str(RunStatus.RUNNING)]))
            with connection.cursor() as cursor:
                cursor.execute(_UNSTAGE_SQL.format(fence=fence, done=done),
                               [*fence_params, drain, item_key, *done_params])
                current, removed, marked = cursor.fetchone()
            if not current:
                assert run is not None
                raise RunSuperseded(
                    f"{drain} run {run.pk} is no longer running (marked by the "
                    f"supervisor): its result for {item_key} stays staged"
                )
            if not (removed and marked):
                return False
            drain_cls.promote(item_key, payload)
            return True
    except RunSuperseded:
        raise
    except Exception as exc:
        _record_promotion_failure(drain, item_key, exc)
        raise PromotionError(drain, item_key, exc) from exc


def _record_promotion_failure(drain: str, item_key: str, exc: BaseException) -> None:
    StagedResult.objects.filter(drain=drain, item_key=item_key).update(
        promote_attempts=F("promote_attempts") + 1,
        promote_error=f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS],
    )


@dataclass
class PromotionReport:
    promoted: int = 0
    already_done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item_key, error)

    @property
    def failed_keys(self) -> set[str]:
        return {key for key, _ in self.failed}

    def __bool__(self) -> bool:
        return bool(self.promoted or self.already_done or self.failed)


def promote_leftovers(*, drain_name: str, run_ids=None) -> PromotionReport:
    """Promote every staged row of ``drain_name`` (or of the runs ``run_ids``), oldest first.

    Zero quota: needs only the drain class's ``promote``, never an extractor. Call it while no
    live run works on these rows (holding the drain's lock, or having checked the lock is free);
    a row a live run is promoting right now is skipped, not promoted twice. A row that fails is
    kept, its failure recorded on it, and listed in the report; the others go on.
    """
    report = PromotionReport()
    rows = StagedResult.objects.filter(drain=drain_name)
    if run_ids is not None:
        rows = rows.filter(run_id__in=list(run_ids))
    for item_key in list(rows.order_by("id").values_list("item_key", flat=True)):
        try:
            promoted = promote_staged(drain=drain_name, item_key=item_key)
        except PromotionError as exc:
            report.failed.append((item_key, f"{type(exc.cause).__name__}: {exc.cause}"))
            continue
        if promoted:
            report.promoted += 1
        else:
            report.already_done += 1
    return report


# --- the local journal (drains/journal.py) -----------------------------------------------------

_REPLAY_STAGE_SQL = (
    f"INSERT INTO {StagedResult._meta.db_table} "
    "(drain, item_key, run_id, payload, created_at, promote_attempts, promote_error) "
    f"VALUES (%s, %s, (SELECT id FROM {DrainRun._meta.db_table} WHERE id = %s), %s::jsonb, %s, 0, '') "
    "ON CONFLICT (drain, item_key) DO NOTHING"
)


def replay_journal(*, drain_name: str, journal: Journal) -> int:
    """Move this host's journal entries of ``drain_name`` into staging, oldest first (and count
    its failed calls on their runs).

    Each entry in one transaction: its staged row (kept when one is already there) and its
    item counted as done on the run that paid for it (that run's checkpoint never counted it:
    an entry is forgotten only after the checkpoint that counts it). The entry is deleted only
    after that commit. Zero quota; call it while no live run of this host works on the drain
    (holding its lock, or having seen the lock free) and before any new call. Returns the count
    of paid results moved.
    """
    for failed in journal.failures(drain_name):  # failed calls: counted, nothing to stage
        spent = Usage()
        spent.add(failed.usage)
        if failed.run_id is not None:
            with transaction.atomic(durable=True):
                _count_journaled(failed.run_id, spent, field="items_failed")
        journal.forget(drain_name, [failed.item_key], tables=("failed",))
    entries = journal.entries(drain_name)
    for entry in entries:
        usage = Usage()
        usage.add(entry.usage)
        with transaction.atomic(durable=True):
            with connection.cursor() as cursor:
                cursor.execute(
                    _REPLAY_STAGE_SQL,
                    [drain_name, entry.item_key, entry.run_id,
                     json.dumps(entry.payload, ensure_ascii=False, default=str), timezone.now()],
                )
            if entry.run_id is not None:
                _count_journaled(entry.run_id, usage)
        journal.forget(drain_name, [entry.item_key], tables=("paid",))
    return len(entries)


def _count_journaled(run_id: int, usage: Usage, field: str = "items_done") -> None:
    """One paid item onto a run's counts, whatever its status (a correction of a dead run's row:
    its usage counts calls from these columns)."""
    run = DrainRun.objects.select_for_update().filter(pk=run_id).only("model_usage").first()
    if run is None:
        return
    values: dict[str, Any] = {field: F(field) + 1,
                              **usage.run_updates(run.model_usage)}
    DrainRun.objects.filter(pk=run_id).update(**values)


# --- what dead runs left, settled --------------------------------------------------------------


@dataclass
class Leftovers:
    """What ``settle_leftovers`` did: paid results moved from the journal, the promotion of the
    staged rows, and the runs whose counts it corrected."""

    replayed: int = 0
    report: PromotionReport = field(default_factory=PromotionReport)
    corrected: list[str] = field(default_factory=list)  # one line each (the event's message)


def settle_leftovers(
    *, drain_name: str, journal: Journal | None, actor: str, run_ids: Iterable[int] | None = None
) -> Leftovers:
    """What dead runs of ``drain_name`` left, settled before any new call: this host's journal
    replayed (into staging and onto its runs' counts), the staged rows promoted, then the rows of
    the runs ``run_ids`` (default: the drain's latest run, when it ended crashed, hung or failed)
    corrected from what they did (drains/runs.py ``correct_run_counts``), each with an event.

    Zero quota. Same rule as ``replay_journal``: no live run of this host works on the drain.
    """
    if run_ids is None:
        latest = (DrainRun.objects.filter(drain=drain_name).order_by("-started_at", "-pk")
                  .values_list("pk", "status").first())
        run_ids = [latest[0]] if latest and latest[1] in UNFINISHED else []
    runs = list(DrainRun.objects.filter(pk__in=list(run_ids)).exclude(status=RunStatus.RUNNING)
                .order_by("pk"))
    before = {run.pk: (run.items_done, run.items_failed) for run in runs}
    settled = Leftovers()
    if journal is not None:
        settled.replayed = replay_journal(drain_name=drain_name, journal=journal)
    settled.report = promote_leftovers(drain_name=drain_name)
    for run in runs:
        line = correct_run_counts(run=run, before=before[run.pk], actor=actor)
        if line:
            settled.corrected.append(line)
    return settled
