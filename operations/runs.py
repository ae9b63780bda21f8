"""The read side of a run's page and of the failed-items list (``/operations/runs/<id>``,
``/operations/failed`` and their API twins): plain data, never a write.

A run's page has everything its row has (trigger, mode, host, pid, times, counts, usage and
cost, stop reason, the one-line error and — to staff — the traceback), its events, its items
(failed with their reason, staged and waiting), and the end of its log file when the log is on
this host. The failed list asks each drain for its failed items (the plugin's
``failed_items``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from drains import failures, registry, schedule
from drains.models import DrainEvent, DrainRun, EventKind, RunStatus, StagedResult, Trigger
from drains.operator import why_not_stop
from operations.snapshot_types import EventFields, RunFields

LOG_TAIL_LINES = 40
LOG_TAIL_BYTES = 64 * 1024
EVENTS_ON_A_RUN = 200
FAILED_LISTED = 200


def run_url(run_id: int) -> str:
    return reverse("operations:run", args=[run_id])


def run_fields(run: DrainRun) -> RunFields:
    """What every surface shows of a run's row: the snapshot's current and last runs, a run's
    page."""
    return {
        "id": run.pk,
        "url": run_url(run.pk),
        "status": run.status,
        "trigger": run.trigger,
        "mode": run.mode,
        "host": run.host,
        "pid": run.pid,
        "backend_pid": run.backend_pid,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "last_checkpoint_at": run.last_checkpoint_at,
    }


def log_path(run: DrainRun) -> Path | None:
    """Where the run's output went, when it is known: the cron line's file, or the file the
    supervisor or "run now" started it with. A run started in a shell wrote to that shell."""
    log_dir = Path(settings.DRAINS_LOG_DIR)
    try:
        argv = registry.get(run.drain).command_line()
    except registry.UnknownDrain:
        argv = [run.drain]
    if run.trigger == Trigger.CRON:
        return log_dir / schedule.cron_log_name(argv)
    if run.trigger == Trigger.SUPERVISOR:
        return log_dir / f"{run.drain}-supervisor.log"
    if run.trigger == Trigger.MANUAL and DrainEvent.objects.filter(
            drain=run.drain, kind=EventKind.RUN_NOW, data__pid=run.pid).exists():
        return log_dir / f"{run.drain}-manual.log"
    return None


def log_tail(run: DrainRun) -> dict:
    """The end of the run's log file, when the file is on this host."""
    path = log_path(run)
    if path is None:
        return {"path": None, "lines": [], "why": "started from a shell: its output went there"}
    if run.host != socket.gethostname():
        return {"path": str(path), "lines": [], "why": f"the log is on {run.host}"}
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return {"path": str(path), "lines": [], "why": "no such file on this host"}
    return {"path": str(path), "lines": text.splitlines()[-LOG_TAIL_LINES:], "why": ""}


def run_detail(run_id: int, *, staff: bool) -> dict:
    """Raises ``DrainRun.DoesNotExist``."""
    run = DrainRun.objects.get(pk=run_id)
    events = list(run.events.order_by("-at", "-id")[:EVENTS_ON_A_RUN])
    failed = [e for e in events if e.kind == EventKind.ITEM_FAILED]
    staged = list(StagedResult.objects.filter(run=run).order_by("id")
                  .values("item_key", "created_at", "promote_attempts", "promote_error")[:200])
    end = run.finished_at or timezone.now()
    return {
        **run_fields(run),
        "drain": run.drain,
        "duration_seconds": round((end - run.started_at).total_seconds(), 1),
        "deadline": run.deadline,
        "backlog_at_start": run.backlog_at_start,
        "items_done": run.items_done,
        "items_failed": run.items_failed,
        "concurrency": run.concurrency,
        "stop_reason": run.stop_reason,
        "error": run.error,
        "error_kind": run.error_kind,
        "reason": failures.reason_line(error=run.error, error_kind=run.error_kind),
        # The traceback names files and lines of the deployment: staff only.
        "traceback": run.error_traceback if staff else None,
        "usage": {
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cache_creation_input_tokens": run.cache_creation_input_tokens,
            "cache_read_input_tokens": run.cache_read_input_tokens,
            "cost_usd": float(run.cost_usd),
            "models": run.model_usage or {},
        },
        "events": [{"at": e.at, "kind": e.kind, "actor": e.actor, "message": e.message}
                   for e in events],
        "failed_items": [{"key": e.data.get("item_key", ""), "at": e.at, "error": e.message}
                         for e in failed],
        "staged": staged,
        "log": log_tail(run),
        "running": run.status == RunStatus.RUNNING,
        "why_not_stop": why_not_stop(run) or "",
    }


def failed_items(*, drain: str | None = None) -> dict:
    """Every drain's items failed for good (or one drain's): ``{"drains": [...]}``."""
    names = [drain] if drain else registry.names()
    out = []
    for name in names:
        cls = registry.get(name)
        items = cls.failed_items(limit=FAILED_LISTED)
        out.append({
            "drain": name,
            "count": cls.failed_count(),
            "items": [{"key": i.key, "label": i.label, "attempts": i.attempts,
                       "error": failures.one_line(i.error), "at": i.at} for i in items],
        })
    return {"drains": out}


# --- the timeline, paged and filtered -------------------------------------------------------------

TIMELINE_PAGE = 50
MESSAGE_CLIP = 300  # characters of an event's message on the page; its own page has it all
ACTOR_CLIP = 40


def event_fields(e: DrainEvent) -> EventFields:
    """An event as the snapshot's notes and timeline list it."""
    return {"id": e.id, "url": reverse("operations:event", args=[e.id]), "at": e.at,
            "drain": e.drain, "kind": e.kind, "actor": e.actor, "message": e.message}


def event_entry(e: DrainEvent) -> dict:
    """An event as the timeline's pages list it: with its run."""
    return {**event_fields(e), "run": e.run_id}


def timeline(*, drain: str | None = None, kind: str | None = None, before: int | None = None,
             limit: int = TIMELINE_PAGE) -> dict:
    """Events newest first, optionally one drain's and one kind's, ``limit`` at a time; the
    next page starts ``before`` the last id of this one (``next_before``, None at the end)."""
    events = DrainEvent.objects.order_by("-at", "-id")
    if drain:
        events = events.filter(drain=drain)
    if kind:
        events = events.filter(kind=kind)
    if before is not None:
        pivot = DrainEvent.objects.filter(pk=before).values_list("at", flat=True).first()
        if pivot is not None:
            events = events.filter(Q(at__lt=pivot) | Q(at=pivot, id__lt=before))
    rows = list(events[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return {"events": [event_entry(e) for e in rows],
            "next_before": rows[-1].id if more and rows else None}


def event_detail(event_id: int) -> dict:
    """Raises ``DrainEvent.DoesNotExist``."""
    e = DrainEvent.objects.get(pk=event_id)
    return {**event_entry(e), "data": e.data,
            "run_url": run_url(e.run_id) if e.run_id else None}


class FilterError(ValueError):
    """A timeline filter that cannot be a value (``field`` names it)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def timeline_filters(params) -> dict:
    """``drain``, ``kind`` and ``before`` from a query string; FilterError for a bad one (an
    event id that is not one; a name that no drain or kind could have: control characters, a
    NUL that PostgreSQL's text refuses, or longer than the column)."""
    before = params.get("before") or None
    if before is not None:
        if not (before.isascii() and before.isdigit() and len(before) <= 18):
            raise FilterError(
                "before", f"{before!r} is not an event id: pass the next_before of a page."
            )
        before = int(before)
    names = {}
    for field in ("drain", "kind"):
        value = params.get(field) or None
        if value is not None and (len(value) > 64 or not value.isprintable()):
            raise FilterError(
                field, f"{value[:40]!r} is not a {field} name: pick one from the timeline's list."
            )
        names[field] = value
    return {**names, "before": before}
