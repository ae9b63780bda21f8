"""Run, checkpoint and staging services: the only code that writes DrainRun and StagedResult
(the backoff fields of DrainControl are drains/quota/backoff.py's).

Each function is one transaction (or one statement) and safe to call from any process: the
runtime calls them while it works, the supervisor calls ``promote_leftovers`` and ``finish_run``
with zero quota. Nothing here imports or constructs an extractor, and
nothing here decides *when* to stop: that is the runner's (drains/runner/) or the
supervisor's call.

Staging contract (docs/architecture.md, "paid once"): ``stage_result`` commits the raw
extractor response in its own transaction the moment it arrives; ``promote_staged`` turns it into
domain rows through the drain class's ``promote(item_key, payload)`` and deletes the staged row
in one transaction, and is a no-op when the row is already gone — so a promotion repeated after a
crash never duplicates anything.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from drains import registry
from drains.events import record_event
from drains.failures import traceback_text
from drains.models import DrainRun, EventKind, RunMode, RunStatus, StagedResult, StopReason, Trigger

logger = logging.getLogger(__name__)

USAGE_TOKEN_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
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


# --- usage ------------------------------------------------------------------------------------


@dataclass
class Usage:
    """Token usage and cost summed over extractor calls (the keys extractors report)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)
    # model -> {"calls", token keys, "cost_usd"}: the extractors' ``model_usage``, summed.
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, usage: Mapping[str, Any] | None) -> None:
        if not usage:
            return
        if isinstance(usage.get("model_usage"), Mapping):
            self.models = merge_model_usage(self.models, usage["model_usage"])
        for key in USAGE_TOKEN_KEYS:
            value = usage.get(key)
            if value:
                setattr(self, key, getattr(self, key) + int(value))
        cost = usage.get("cost_usd")
        if cost:
            try:
                self.cost_usd += Decimal(str(cost))
            except InvalidOperation:
                logger.warning("ignoring an unreadable cost_usd %r in extractor usage", cost)

    def __bool__(self) -> bool:
        return (
            any(getattr(self, key) for key in USAGE_TOKEN_KEYS)
            or bool(self.cost_usd)
            or bool(self.models)
        )


def merge_model_usage(total: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Per-model usage ``total`` plus ``more``, summed key by key (numbers only; cost rounded)."""
    merged = {model: dict(spent) for model, spent in total.items()}
    for model, spent in more.items():
        if not isinstance(spent, Mapping):
            continue
        entry = merged.setdefault(str(model), {})
        for key, value in spent.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                summed = entry.get(key, 0) + value
                entry[key] = round(summed, 6) if isinstance(summed, float) else summed
    return merged


def error_text(exc: BaseException) -> str:
    """A failure's full traceback, bounded (``DrainRun.error_traceback``; drains/failures.py)."""
    return traceback_text(exc)


# --- runs -------------------------------------------------------------------------------------


def start_run(
    *,
    drain: str,
    trigger: str = Trigger.CRON,
    mode: str = RunMode.NORMAL,
    deadline: datetime | None = None,
    backlog_at_start: int | None = None,
    backend_pid: int | None = None,
    slot: datetime | None = None,
    concurrency: int = 1,
    extractor: str = "",
) -> DrainRun:
    """Record that this process starts a run now (status running)."""
    return DrainRun.objects.create(
        drain=drain,
        trigger=trigger,
        mode=mode,
        host=socket.gethostname(),
        pid=os.getpid(),
        backend_pid=backend_pid,
        started_at=timezone.now(),
        deadline=deadline,
        backlog_at_start=backlog_at_start,
        slot=slot,
        concurrency=concurrency,
        extractor=extractor[:200],
    )


def switch_to_burst(*, run: DrainRun, deadline: datetime) -> bool:
    """A normal run goes on as a burst run (the autopilot started the drain's burst while it
    ran): its mode and deadline say so from now on. Guarded: only a running run moves."""
    moved = DrainRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        mode=RunMode.BURST, deadline=deadline
    )
    if moved:
        run.mode, run.deadline = RunMode.BURST, deadline
    return bool(moved)


def record_checkpoint(
    *, run: DrainRun, done: int = 0, failed: int = 0, usage: Usage | None = None, chunks: int = 1,
    busy_seconds: float = 0.0,
) -> bool:
    """Commit a chunk's counters and the liveness signal (``last_checkpoint_at``).

    One UPDATE. Returns False when the run is no longer ``running`` (the supervisor marked it
    hung or crashed): its process should stop.
    """
    now = timezone.now()
    values: dict[str, Any] = {
        "last_checkpoint_at": now,
        "items_done": F("items_done") + done,
        "items_failed": F("items_failed") + failed,
        "chunks": F("chunks") + chunks,
    }
    if busy_seconds:
        values["busy_seconds"] = F("busy_seconds") + busy_seconds
    if usage:
        for key in USAGE_TOKEN_KEYS:
            if getattr(usage, key):
                values[key] = F(key) + getattr(usage, key)
        if usage.cost_usd:
            values["cost_usd"] = F("cost_usd") + usage.cost_usd
        if usage.models:
            # Only this run's own process writes its row while it runs (the update is guarded),
            # so the total it holds is the stored one.
            values["model_usage"] = merge_model_usage(run.model_usage or {}, usage.models)
    updated = DrainRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(**values)
    run.last_checkpoint_at = now
    if updated and "model_usage" in values:
        run.model_usage = values["model_usage"]
    return bool(updated)


def finish_run(
    *, run: DrainRun, status: str, stop_reason: str = "", error: str = "", error_kind: str = "",
    error_traceback: str = "",
) -> bool:
    """Move a run from ``running`` to a final ``status``. Guarded and idempotent.

    ``error`` is one line (drains/failures.py ``describe_failure`` gives it, its kind and the
    traceback for an exception). A run that is no longer running (e.g. the supervisor already
    marked it ``hung``) keeps its status: returns False and changes nothing.
    """
    if status == RunStatus.RUNNING or status not in RunStatus.values:
        raise ValueError(f"{status!r} is not a final run status")
    now = timezone.now()
    updated = DrainRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=status, finished_at=now, stop_reason=stop_reason[:32], error=error,
        error_kind=error_kind, error_traceback=error_traceback,
    )
    if updated:
        run.status, run.finished_at, run.stop_reason, run.error = status, now, stop_reason, error
        run.error_kind, run.error_traceback = error_kind, error_traceback
    return bool(updated)


def mark_dead_runs(*, drain: str, reason: str, actor: str, exclude: DrainRun | None = None) -> list[int]:
    """Mark every ``running`` run of ``drain`` as ``crashed``, with an event each.

    Only call this when the runs are known to be dead — e.g. while holding the drain's lock,
    which no live runner could have let go.
    """
    runs = DrainRun.objects.filter(drain=drain, status=RunStatus.RUNNING)
    if exclude is not None:
        runs = runs.exclude(pk=exclude.pk)
    marked = []
    for run in runs.order_by("pk"):
        if finish_run(
            run=run, status=RunStatus.CRASHED, stop_reason=StopReason.DEAD, error=reason
        ):
            record_event(
                drain=drain,
                run=run,
                actor=actor,
                kind=EventKind.RUN_CRASHED,
                message=f"run {run.pk} (pid {run.pid} on {run.host}) marked crashed: {reason}",
                data={"run": run.pk, "pid": run.pid, "host": run.host},
            )
            marked.append(run.pk)
    return marked


def finish_even_after_db_error(*, run: DrainRun, status: str, stop_reason: str, **error) -> None:
    """finish_run, retried once on a fresh connection when the failure broke the old one."""
    try:
        finish_run(run=run, status=status, stop_reason=stop_reason, **error)
        return
    except DatabaseError as first:
        logger.warning("recording the end of run %s failed (%s); reconnecting", run.pk, first)
    connection.close()
    finish_run(run=run, status=status, stop_reason=stop_reason, **error)


# --- staging and promotion --------------------------------------------------------------------

_STAGE_SQL = (
    f"INSERT INTO {StagedResult._meta.db_table} "
    "(drain, item_key, run_id, payload, created_at, promote_attempts, promote_error) "
    "VALUES (%s, %s, %s, %s::jsonb, %s, 0, '') "
    "ON CONFLICT (drain, item_key) DO NOTHING RETURNING id"
)


_UNSTAGE_SQL = f"DELETE FROM {StagedResult._meta.db_table} WHERE drain = %s AND item_key = %s"
# The fenced form, for a promotion by a run: in one statement, the run row is locked (FOR SHARE,
# so the supervisor's status change waits for this transaction) and checked to still be running,
# and the staged row is removed only then. A conditional write, never a read and then a write.
_FENCED_UNSTAGE_SQL = (
    f"WITH fence AS (SELECT id FROM {DrainRun._meta.db_table} WHERE id = %s AND status = %s "
    "FOR SHARE), "
    f"gone AS (DELETE FROM {StagedResult._meta.db_table} WHERE drain = %s AND item_key = %s "
    "AND EXISTS (SELECT 1 FROM fence) RETURNING 1) "
    "SELECT (SELECT count(*) FROM fence), (SELECT count(*) FROM gone)"
)


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
    the drain's ``promote`` found the item already done). Raises ``PromotionError`` after
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
            # Deleting the row first makes a concurrent or repeated promotion a no-op.
            with connection.cursor() as cursor:
                if run is None:
                    cursor.execute(_UNSTAGE_SQL, [drain, item_key])
                    removed = cursor.rowcount
                else:
                    cursor.execute(
                        _FENCED_UNSTAGE_SQL, [run.pk, RunStatus.RUNNING, drain, item_key]
                    )
                    current, removed = cursor.fetchone()
                    if not current:
                        raise RunSuperseded(
                            f"{drain} run {run.pk} is no longer running (marked by the "
                            f"supervisor): its result for {item_key} stays staged"
                        )
                if not removed:
                    return False
            return bool(drain_cls.promote(item_key, payload))
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


def replay_journal(*, drain_name: str, journal) -> int:
    """Move this host's journal entries of ``drain_name`` into staging, oldest first (and count
    its failed calls on their runs).

    Each entry in one transaction: its staged row (kept when one is already there) and its
    item counted as done on the run that paid for it (that run's checkpoint never counted it:
    an entry is forgotten only after the checkpoint that counts it). The entry is deleted only
    after that commit. Zero quota; call it while no live run of this host works on the drain
    (holding its lock, or having seen the lock free) and before any new call. Returns the count
    of paid results moved.
    """
    for entry in journal.failures(drain_name):  # failed calls: counted, nothing to stage
        usage = Usage()
        usage.add(entry.usage)
        if entry.run_id is not None:
            with transaction.atomic(durable=True):
                _count_journaled(entry.run_id, usage, field="items_failed")
        journal.forget(drain_name, [entry.item_key])
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
        journal.forget(drain_name, [entry.item_key])
    return len(entries)


def _count_journaled(run_id: int, usage: Usage, field: str = "items_done") -> None:
    """One paid item onto a run's counts, whatever its status (a correction of a dead run's row:
    its usage counts calls from these columns)."""
    run = DrainRun.objects.select_for_update().filter(pk=run_id).only("model_usage").first()
    if run is None:
        return
    values: dict[str, Any] = {field: F(field) + 1}
    for key in USAGE_TOKEN_KEYS:
        if getattr(usage, key):
            values[key] = F(key) + getattr(usage, key)
    if usage.cost_usd:
        values["cost_usd"] = F("cost_usd") + usage.cost_usd
    if usage.models:
        values["model_usage"] = merge_model_usage(run.model_usage or {}, usage.models)
    DrainRun.objects.filter(pk=run_id).update(**values)


# --- a dead run's row, corrected ---------------------------------------------------------------

# A run that ended so may not have written its last counts: killed (crashed, or stopped as hung),
# or ended on an error while the database was away.
UNFINISHED = (RunStatus.CRASHED, RunStatus.HUNG, RunStatus.FAILED)


@dataclass
class Leftovers:
    """What ``settle_leftovers`` did: paid results moved from the journal, the promotion of the
    staged rows, and the runs whose counts it corrected."""

    replayed: int = 0
    report: PromotionReport = field(default_factory=PromotionReport)
    corrected: list[str] = field(default_factory=list)  # one line each (the event's message)


def settle_leftovers(
    *, drain_name: str, journal, actor: str, run_ids=None
) -> Leftovers:
    """What dead runs of ``drain_name`` left, settled before any new call: this host's journal
    replayed (into staging and onto its runs' counts), the staged rows promoted, then the rows of
    the runs ``run_ids`` (default: the drain's latest run, when it ended crashed, hung or failed)
    corrected from what they did (``correct_run_counts``), each correction with an event.

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


def correct_run_counts(*, run: DrainRun, before: tuple[int, int], actor: str) -> str | None:
    """A dead run's ``items_done`` from the items themselves: those its drain finished between
    the run's start and the next run's (or now; ``Drain.done_between``), when more than its row
    says (never fewer: a paid result kept in staging counts too). ``before``: the row's counts
    before this host's journal was replayed onto it. When the row changed (replay included),
    an event says from what to what; returns its message, or None.

    Only one runner works on a drain at a time (the drain lock), and a run's row is written
    after its start's leftovers are promoted, so what was finished in that window is this run's.
    """
    drain_cls = registry.get(run.drain)
    until = (DrainRun.objects.filter(drain=run.drain, started_at__gt=run.started_at)
             .order_by("started_at").values_list("started_at", flat=True).first())
    done = drain_cls.done_between(run.started_at, until or timezone.now())
    with transaction.atomic():
        row = DrainRun.objects.select_for_update().get(pk=run.pk)
        if done is not None and done > row.items_done:
            DrainRun.objects.filter(pk=run.pk).update(items_done=done)
            row.items_done = done
        after = (row.items_done, row.items_failed)
        if after == before:
            return None
        message = (
            f"run {run.pk} ({row.status}) counts corrected from what it did: "
            f"{before[0]} → {after[0]} done, {before[1]} → {after[1]} failed "
            "(its last checkpoint had not counted them)"
        )
        record_event(
            drain=run.drain, run=run, actor=actor, kind=EventKind.RUN_CORRECTED, message=message,
            data={"run": run.pk, "done": list(map(int, (before[0], after[0]))),
                  "failed": list(map(int, (before[1], after[1])))},
        )
    run.items_done, run.items_failed = after
    return message
