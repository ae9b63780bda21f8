"""Run and checkpoint services: the only code that writes DrainRun (the backoff fields of
DrainControl are drains/quota/backoff.py's; staging and promotion, StagedResult's only writer,
are drains/staging.py's).

Each function is one transaction (or one statement) and safe to call from any process: the
runtime calls them while it works, the supervisor calls ``finish_run`` with zero quota. Nothing here imports or constructs an extractor, and
nothing here decides *when* to stop: that is the runner's (drains/runner/) or the
supervisor's call.
"""

from __future__ import annotations

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
from drains.models import DrainRun, EventKind, RunMode, RunStatus, StopReason, Trigger

logger = logging.getLogger(__name__)

USAGE_TOKEN_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


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

    def run_updates(self, stored_models: Mapping[str, Any] | None) -> dict[str, Any]:
        """This usage added onto a run's row: the UPDATE's values for its token columns, its
        cost and its per-model usage (``stored_models``, the row's, plus these)."""
        values: dict[str, Any] = {}
        for key in USAGE_TOKEN_KEYS:
            if getattr(self, key):
                values[key] = F(key) + getattr(self, key)
        if self.cost_usd:
            values["cost_usd"] = F("cost_usd") + self.cost_usd
        if self.models:
            values["model_usage"] = merge_model_usage(stored_models or {}, self.models)
        return values


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


logger = logging.getLogger(__name__)


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
        # Only this run's own process writes its row while it runs (the update is guarded),
        # so the total it holds is the stored one.
        values.update(usage.run_updates(run.model_usage))
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


# --- a dead run's row, corrected ---------------------------------------------------------------

# A run that ended so may not have written its last counts: killed (crashed, or stopped as hung),
# or ended on an error while the database was away.
UNFINISHED = (RunStatus.CRASHED, RunStatus.HUNG, RunStatus.FAILED)


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
        if done > row.items_done:
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
