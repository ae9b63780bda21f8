"""The operations snapshot (the API, the /operations page, the burn-down chart): drain state
shaped into plain data, with a state and a one-line reason per service.

It reads through the drains read side — the burst service (``get_drain_bursts``, G2), who holds
each drain's runner lock (``drain_lock_holders``) and one round trip of batched statements
(``drains.selectors.snapshot``) — three round trips for the shipped drains, however many
drains, runs and events exist — plus the quota usage of this week and the one before
(``drains.selectors.usage``: one aggregate, the quota keys, and each drain's products per week), and
each quota key's windows, reserves, autopilot and forecast (``drains.selectors.quota``). A
service's state and reason are operations/states.py's; what a row means (alive, hung, backoff in
force) is asked of drains/rules.py. The document's shape is operations/snapshot_types.py's. It
must never write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.utils import timezone

from drains import bursts, failures, operator, registry, rules, schedule
from drains.locks import drain_lock_holders
from drains.models import DrainControl, DrainRun, RunStatus
from drains.quota import policy
from drains.quota.kinds import describe_kind
from drains.selectors import snapshot as reads
from drains.selectors.quota import quota_entries
from drains.selectors.rows import Backlog, BackoffRow, ControlRow, CurrentRun, RunSpan
from drains.selectors.snapshot import HISTORY_HOURS, NOTES_PER_SERVICE, TIMELINE_LENGTH
from drains.selectors.usage import usage_by_week
from operations import projection as proj
from operations.quota import quota_json
from operations.runs import event_fields, run_fields
from operations.snapshot_types import (
    BacklogEntry,
    BackoffEntry,
    RunEntry,
    ServiceEntry,
    ServiceFields,
    Snapshot,
)
from operations.states import drain_state, job_state
from operations.usage import usage_entry

__all__ = [
    "HISTORY_HOURS",
    "NOTES_PER_SERVICE",
    "TIMELINE_LENGTH",
    "DrainChart",
    "drain_chart",
    "next_fire",
    "service_entry",
    "snapshot",
]
USAGE_WEEKS = 2  # the current quota week and the one before it


@dataclass(frozen=True)
class _Job:
    name: str  # service name: the drain name for drains, else the command
    command: str | None
    kind: str
    expression: str | None
    drain: str | None  # registered drain name, when this is a drain


@lru_cache(maxsize=512)
def _next_fire(expression: str, minute: datetime, zone: str) -> datetime:
    # The next fire after any moment within a minute is the next fire after the minute's start
    # (cron has no seconds), so one answer per expression and minute serves every refresh.
    return schedule.next_fire_times(expression, 1, minute)[0]


def next_fire(expression: str, now: datetime) -> datetime:
    return _next_fire(expression, now.replace(second=0, microsecond=0), str(schedule.cron_tz()))


def _services() -> list[_Job]:
    drains = registry.names()
    jobs, seen = [], set()
    for job in schedule.scheduled_jobs():
        drain = job.drain if job.drain in drains else None
        kind = job.kind if (job.kind != "drain" or drain) else "job"
        name = drain or job.name
        jobs.append(_Job(name, " ".join([job.name, *job.args]), kind, job.expression, drain))
        seen.add(name)
    # Registered drains that cron does not start (a burst / the supervisor runs them) still
    # belong in the snapshot.
    for name in drains:
        if name not in seen:
            jobs.append(_Job(name, None, "drain", None, name))
    return jobs


# --- shaping --------------------------------------------------------------------------------------


def _run(run: DrainRun | None, now: datetime) -> RunEntry | None:
    if run is None:
        return None
    seen = rules.last_sign_of_life(last_checkpoint_at=run.last_checkpoint_at, started_at=run.started_at)
    progress = None
    if run.backlog_at_start:
        progress = round(min(1.0, run.items_done / run.backlog_at_start), 4)
    return {
        **run_fields(run),
        "checkpoint_age_seconds": (
            max(0, int((now - seen).total_seconds())) if run.status == RunStatus.RUNNING else None
        ),
        "items_done": run.items_done,
        "items_failed": run.items_failed,
        "backlog_at_start": run.backlog_at_start,
        "progress": progress,
        "deadline": run.deadline,
        "error": failures.reason_line(error=run.error),
        "error_kind": run.error_kind,
        "models": _models(run.model_usage),
    }


def _models(model_usage) -> list[str]:
    """The models a run's calls were spent on, most calls first (``DrainRun.model_usage``)."""
    if isinstance(model_usage, str):  # the snapshot's raw SQL hands jsonb over as text
        model_usage = json.loads(model_usage)
    spent = model_usage if isinstance(model_usage, dict) else {}
    return sorted(spent, key=lambda m: (-(spent[m] or {}).get("calls", 0), m))


def _backoff_end(control: DrainControl | None, now: datetime) -> datetime | None:
    if control is not None and policy.backoff_active(control.backoff_until, now=now):
        return control.backoff_until
    return None


def _control(controls: dict[str, ControlRow], name: str) -> DrainControl | None:
    row = controls.get(name)
    return row.control if row is not None else None


def _backoff_json(control: DrainControl | None, now: datetime) -> BackoffEntry | None:
    """The entry's ``backoff``: the drain's own backoff in force (None: none)."""
    if control is None or not policy.backoff_active(control.backoff_until, now=now):
        return None
    return {
        "until": control.backoff_until,
        "reason": control.backoff_reason,
        "observed_at": control.backoff_observed_at,
        "kind": control.backoff_kind,
        "model": control.backoff_model,
        "kind_label": describe_kind(control.backoff_kind, control.backoff_model),
    }


def _backlog_json(backlog: Backlog) -> BacklogEntry:
    """The entry's ``backlog``: the drain's items per status, its staged rows, its oldest
    pending item."""
    return {"pending": backlog.pending, "staged": backlog.staged, "done": backlog.done,
            "failed": backlog.failed, "oldest_pending_at": backlog.oldest_pending_at}


def _window() -> timedelta:
    return timedelta(minutes=settings.DRAINS_PROJECTION_WINDOW_MINUTES)


@dataclass
class DrainChart:
    name: str
    projection: proj.Projection
    history: list[tuple[datetime, int]]


def _entry(service: _Job, next_fire_at, current: DrainRun | None, last: DrainRun | None, notes,
           now) -> ServiceFields:
    """A service's entry with what every kind of service has; a drain fills in the rest."""
    return {
        "name": service.name,
        "command": service.command,
        "kind": service.kind,
        "schedule": service.expression,
        "next_fire_at": next_fire_at,
        "current_run": _run(current, now),
        "last_run": _run(last, now),
        "notes": [event_fields(e) for e in notes],
        "enabled": None,
        "burst_until": None,
        "burst_active": False,
        "backoff": None,
        "backlog": None,
        "projection": None,
        "why_not_run_now": None,
    }


def _why_not_run_now(name: str, *, control: DrainControl | None, backoffs: list[BackoffRow],
                     holder, next_fire, backlog: Backlog, now) -> str | None:
    """Why the page's "run now" cannot apply (None: it can), asked of drains/operator.py's rule
    with what the snapshot read, so the button follows each refresh at no extra round trip."""
    blocking = policy.blocking_backoff(drain=name, quota_key=control.quota_key if control else "",
                                       controls=backoffs, now=now)
    return operator.start_refusal(
        enabled=control is None or control.enabled,
        backoff_until=blocking.backoff_until if blocking else None,
        backoff_drain=blocking.name if blocking else name, name=name, holder=holder,
        next_fire=next_fire, pending=backlog.pending, now=now)


def _drain_entry(entry: ServiceFields, name: str, *, now, row: ControlRow | None, burst,
                 current: CurrentRun | None, last: DrainRun | None, backlog: Backlog,
                 done_per_hour, recent_runs: list[RunSpan], holder,
                 backoffs: list[BackoffRow]) -> tuple[str, str]:
    """Fill a drain's part of its snapshot entry; return its (state, reason)."""
    control = row.control if row is not None else None
    state, reason = drain_state(
        control=control, disabled_by=row.disabled_by if row is not None else None, burst=burst,
        current=current.run if current is not None else None, last=last, backlog=backlog,
        next_fire=entry["next_fire_at"], holder=holder, now=now,
    )
    p, history = proj.drain_projection(backlog=backlog, burst=burst, done_per_hour=done_per_hour,
                                       runs=recent_runs, now=now, window=_window(),
                                       backoff_until=_backoff_end(control, now),
                                       extractor=registry.get(name).extractor_label(),
                                       next_fire=entry["next_fire_at"],
                                       running=current is not None)
    entry.update({
        "enabled": control.enabled if control is not None else True,
        "burst_until": burst.effective_until,
        "burst_active": burst.active,
        "backoff": _backoff_json(control, now),
        "backlog": _backlog_json(backlog),
        "why_not_run_now": _why_not_run_now(name, control=control, backoffs=backoffs,
                                            holder=holder, next_fire=entry["next_fire_at"],
                                            backlog=backlog, now=now),
        "projection": {
            "deadline": p.deadline,
            "deadline_kind": p.deadline_kind,
            "rate_per_hour": p.rate_per_hour,
            "rate_text": proj.rate_text(p),
            "finish_at": p.finish_at,
            "fraction_by_deadline": p.fraction_by_deadline,
            "on_time": p.on_time,
            "text": p.text,
            "measured": p.measured,
            "history": [{"at": t, "backlog": v} for t, v in history],
        },
    })
    return state, reason


@dataclass
class _Reads:
    """Everything the snapshot reads of its services' drains: the burst states, the lock
    holders, and the batched statements' answers (one round trip)."""

    bursts: dict
    holders: dict
    controls: dict[str, ControlRow]
    backoffs: list[BackoffRow]
    current: dict[str, CurrentRun]
    last: dict[str, DrainRun]
    done: dict[str, list[float]]
    runs: dict[str, list[RunSpan]]
    backlogs: dict[str, Backlog]
    notes: dict
    recent: list


def _read(services: list[_Job], now: datetime, *, with_timeline: bool) -> _Reads:
    drain_names = [s.drain for s in services if s.drain]
    burst_states = bursts.get_drain_bursts()
    holders = drain_lock_holders(drain_names)
    controls, backoffs, (current, last), done, runs, backlogs, (notes, recent) = reads.fetch([
        reads.controls(drain_names),
        reads.backoffs(now),
        reads.runs([s.name for s in services]),
        reads.done_per_hour(drain_names, now),
        reads.recent_runs(drain_names, now, now - _window() - proj.SESSION_BOUND),
        reads.backlogs(drain_names),
        reads.events(now, with_timeline=with_timeline),
    ])
    return _Reads(burst_states, holders, controls, backoffs, current, last, done, runs, backlogs,
                  notes, recent)


def _service_entry(service: _Job, r: _Reads, now: datetime) -> ServiceEntry:
    """One service's snapshot entry, its state and reason included (takes its notes from
    ``r.notes``, so that what is left over is the notes of no service)."""
    name = service.name
    next_fire_at = next_fire(service.expression, now) if service.expression else None
    current, last = r.current.get(name), r.last.get(name)
    entry = _entry(service, next_fire_at, current.run if current is not None else None, last,
                   r.notes.pop(name, []), now)
    if service.drain:
        state, reason = _drain_entry(
            entry, name, now=now, row=r.controls.get(name), burst=r.bursts[name],
            current=current, last=last, backlog=r.backlogs[name], done_per_hour=r.done[name],
            recent_runs=r.runs[name], holder=r.holders.get(name), backoffs=r.backoffs,
        )
    else:
        state, reason = job_state(current=current, last=last, next_fire=next_fire_at, now=now)
    return {**entry, "state": state, "reason": reason}


def snapshot(*, now: datetime | None = None, only: str | None = None) -> Snapshot:
    """The whole operations snapshot (``only``: just one service, for the burst answer)."""
    now = now or timezone.now()
    services = _services()
    if only is not None:
        services = [s for s in services if s.name == only]
    r = _read(services, now, with_timeline=only is None)
    entries = [_service_entry(service, r, now) for service in services]
    leftover = sorted((e for events in r.notes.values() for e in events), key=lambda e: e.at,
                      reverse=True)
    return {
        "generated_at": now,
        "week_boundary": bursts.upcoming_week_boundary(now),
        "services": entries,
        "notes": [] if only is not None else [event_fields(e) for e in leftover],
        "timeline": [event_fields(e) for e in r.recent],
        "usage": [] if only is not None else [
            usage_entry(u) for u in usage_by_week(now=now, weeks=USAGE_WEEKS)],
        # Per quota key: its windows, reserves, ceilings, autopilot and forecast (issue 20).
        "quotas": [] if only is not None else [quota_json(q, now) for q in quota_entries(now=now)],
    }


def service_entry(name: str, *, now: datetime | None = None) -> ServiceEntry:
    """One drain's entry (raises ``registry.UnknownDrain``)."""
    registry.get(name)
    return snapshot(now=now, only=name)["services"][0]


def drain_chart(name: str, *, now: datetime | None = None) -> DrainChart:
    """The projection and backlog history of one drain, for the burn-down SVG."""
    registry.get(name)
    now = now or timezone.now()
    burst = bursts.get_drain_burst(name)
    backlogs, done, runs, controls, (current, _) = reads.fetch([
        reads.backlogs([name]), reads.done_per_hour([name], now),
        reads.recent_runs([name], now, now - _window() - proj.SESSION_BOUND),
        reads.controls([name]), reads.runs([name])])
    drain = registry.get(name)
    expression = next((j.expression for j in schedule.scheduled_jobs() if j.drain == name), None)
    p, history = proj.drain_projection(backlog=backlogs[name], burst=burst,
                                       done_per_hour=done[name], runs=runs[name], now=now,
                                       window=_window(),
                                       backoff_until=_backoff_end(_control(controls, name), now),
                                       extractor=drain.extractor_label(),
                                       next_fire=next_fire(expression, now) if expression else None,
                                       running=name in current,
                                       first_item_at=drain.first_item_at())
    return DrainChart(name, p, history)
