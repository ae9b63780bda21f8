"""Reads for the operations snapshot (the API, the /operations page, the burn-down chart).

Owns: turning the drains tables, the schedule and the registry into plain data, with a state
and a one-line reason per service. It must never write, and it reads in a CONSTANT number of
queries however many drains, runs and events exist — three round trips for the shipped drains:

1. burst state of every drain: ``drains.bursts.get_drain_bursts()`` (the service, G2);
2. who holds each drain's runner lock: ``drains.locks.drain_lock_holders()`` — a drain's run
   is alive exactly when its ``backend_pid`` holds the lock;
3. one round trip of five statements (``_fetch``):
   a. every DrainControl row;
   b. per run name, the newest running run and the newest finished one: a UNION ALL of two
      LATERAL joins over ``unnest(names)``, each an index probe on (drain, started_at), with
      ``pg_stat_get_activity(backend_pid)`` telling whether a running job's session is there;
   c. items done per drain per hour for the last ``HISTORY_HOURS`` hours (the rate and the
      burn-down): a ``generate_series`` join over the runs that reach into the window;
   d. backlog counts of every drain plus staged rows: ONE ``UNION ALL`` of per-drain GROUP
      BYs. A drain class takes part by exposing ``backlog_queryset()`` (its items) and
      ``backlog_status_field`` (a field whose values are pending / done / failed). A class
      that only has ``backlog_counts()`` is asked separately: one more query per such class
      (the shipped halacha and metadata drains, for now);
   e. notes (the newest ``NOTES_PER_SERVICE`` note events per drain of the last day) and the
      event timeline (the newest ``TIMELINE_LENGTH`` events).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import connection
from django.db.models import CharField, Count, F, OuterRef, Subquery, Value
from django.utils import timezone

from drains import bursts, registry, schedule
from drains.locks import drain_lock_holders
from drains.models import DrainControl, DrainEvent, DrainRun, RunStatus, StagedResult
from operations import projection as proj

HISTORY_HOURS = 12
NOTES_PER_SERVICE = 5
NOTES_WINDOW = timedelta(hours=24)
# Notes are events of kind "note" (anything surfaced for an operator) and the supervisor's
# decisions ("supervisor_*").
TIMELINE_LENGTH = 30
FAILED_STATUSES = {RunStatus.FAILED, RunStatus.CRASHED, RunStatus.HUNG}


class State:
    IDLE = "idle"
    RUNNING = "running"
    HUNG = "hung"
    BACKING_OFF = "backing_off"
    DISABLED = "disabled"
    FAILING = "failing"

    choices = (IDLE, RUNNING, HUNG, BACKING_OFF, DISABLED, FAILING)


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
        jobs.append(_Job(name, job.name, kind, job.expression, drain))
        seen.add(name)
    # Registered drains that cron does not start (a burst / the supervisor runs them) still
    # belong in the snapshot.
    for name in drains:
        if name not in seen:
            jobs.append(_Job(name, None, "drain", None, name))
    return jobs


# --- the queries ---------------------------------------------------------------------------------
#
# Each read below is a _Statement: its SQL and parameters, and how to turn its rows into data.
# ``_fetch`` sends them together, so the snapshot's own reads cost one round trip.


@dataclass(frozen=True)
class _Statement:
    sql: str
    params: list
    read: Callable[[list[tuple]], object]


def _fetch(statements: list[_Statement]) -> list:
    """Run SELECT statements in one round trip, one result per statement.

    psycopg's client-side binding (Django's default) sends several statements as one message
    and returns a result set for each (``nextset``). Server-side binding (the
    ``server_side_binding`` database option) allows one statement per message: then they run
    one by one.
    """
    results = []
    with connection.cursor() as cursor:
        if connection.settings_dict["OPTIONS"].get("server_side_binding"):
            for statement in statements:
                cursor.execute(statement.sql, statement.params)
                results.append(statement.read(cursor.fetchall()))
            return results
        cursor.execute(";\n".join(s.sql for s in statements),
                       [param for s in statements for param in s.params])
        for i, statement in enumerate(statements):
            if i:
                cursor.nextset()
            results.append(statement.read(cursor.fetchall()))
    return results


def _columns(model, skip=()) -> tuple[list[str], list[str]]:
    """(SQL column list, attnames) of a model's concrete fields, in model order."""
    fields = [f for f in model._meta.concrete_fields if f.attname not in skip]
    return [f'"{f.column}"' for f in fields], [f.attname for f in fields]


def _controls(drain_names: list[str]) -> _Statement:
    # ``disabled_by``: who last switched the drain off (its newest "disabled" event), since
    # ``updated_by`` also names whoever last toggled a burst.
    disabled_by = DrainEvent.objects.filter(drain=OuterRef("name"), kind="disabled").order_by(
        "-at", "-id").values("actor")[:1]
    sql, params = (DrainControl.objects.filter(name__in=drain_names)
                   .annotate(disabled_by=Subquery(disabled_by)).query.sql_with_params())
    attnames = [f.attname for f in DrainControl._meta.concrete_fields]

    def read(rows):
        controls = {}
        for row in rows:
            control = DrainControl.from_db(connection.alias, attnames, row[:len(attnames)])
            control.disabled_by = row[len(attnames)]
            controls[control.name] = control
        return controls

    return _Statement(sql, list(params), read)


def _runs(names: list[str]) -> _Statement:
    """(current running run, newest finished run) per name; runs carry ``backend_alive``."""
    table = DrainRun._meta.db_table
    columns, attnames = _columns(DrainRun)
    select = ", ".join(f"r.{c}" for c in columns)
    sql = f"""
        (SELECT {select}, 'current' AS slot,
                EXISTS (SELECT 1 FROM pg_stat_get_activity(r.backend_pid)) AS backend_alive
         FROM unnest(%s::text[]) AS n(name)
         CROSS JOIN LATERAL (
             SELECT * FROM {table} WHERE drain = n.name AND status = 'running'
             ORDER BY started_at DESC, id DESC LIMIT 1) r)
        UNION ALL
        (SELECT {select}, 'last' AS slot, NULL AS backend_alive
         FROM unnest(%s::text[]) AS n(name)
         CROSS JOIN LATERAL (
             SELECT * FROM {table} WHERE drain = n.name AND status <> 'running'
             ORDER BY started_at DESC, id DESC LIMIT 1) r)
    """

    def read(rows):
        current, last = {}, {}
        for *values, slot, alive in rows:
            run = DrainRun.from_db(connection.alias, attnames, values)
            if slot == "current":
                # Not recorded (no backend pid): liveness unknown.
                run.backend_alive = alive if run.backend_pid is not None else None
                current[run.drain] = run
            else:
                last[run.drain] = run
        return current, last

    return _Statement(sql, [names, names], read)


def _done_per_hour(names: list[str], now: datetime) -> _Statement:
    """Items done per drain in each of the last HISTORY_HOURS hours, oldest first.

    A run's items are spread evenly over its span (start to its last checkpoint, or to its end
    when finished): counters are only known per checkpoint, so this is the best estimate.
    The runs read are those started inside the window plus, per drain, the one run started
    last before it (the single-runner lock means no earlier run can still reach into the
    window): index probes on (drain, started_at), however long the history.
    """
    table = DrainRun._meta.db_table
    window_start = now - timedelta(hours=HISTORY_HOURS)
    sql = f"""
        WITH buckets AS (
            SELECT i, %s::timestamptz - (i + 1) * interval '1 hour' AS b0,
                      %s::timestamptz - i * interval '1 hour' AS b1
            FROM generate_series(0, %s - 1) AS i),
        picked AS (
            SELECT drain, started_at, finished_at, last_checkpoint_at, status, items_done
            FROM {table}
            WHERE drain = ANY(%s) AND started_at >= %s AND started_at < %s
            UNION ALL
            SELECT r.drain, r.started_at, r.finished_at, r.last_checkpoint_at, r.status,
                   r.items_done
            FROM unnest(%s::text[]) AS n(name)
            CROSS JOIN LATERAL (
                SELECT * FROM {table} WHERE drain = n.name AND started_at < %s
                ORDER BY started_at DESC LIMIT 1) r),
        spans AS (
            SELECT drain, started_at AS s, items_done AS n,
                   GREATEST(started_at, CASE WHEN status = 'running'
                        THEN COALESCE(last_checkpoint_at, started_at)
                        ELSE COALESCE(finished_at, last_checkpoint_at, started_at) END) AS e
            FROM picked WHERE items_done > 0)
        SELECT s.drain, b.i,
               SUM(CASE WHEN s.e = s.s THEN s.n
                        ELSE s.n * EXTRACT(EPOCH FROM LEAST(s.e, b.b1) - GREATEST(s.s, b.b0))
                                 / EXTRACT(EPOCH FROM s.e - s.s) END)
        FROM spans s JOIN buckets b ON s.s < b.b1 AND s.e > b.b0
        GROUP BY s.drain, b.i
    """
    params = [now, now, HISTORY_HOURS, names, window_start, now, names, window_start]

    def read(rows):
        result = {name: [0.0] * HISTORY_HOURS for name in names}
        for drain, i, done in rows:
            result[drain][HISTORY_HOURS - 1 - i] = float(done)
        return result

    return _Statement(sql, params, read)


def _backlogs(drain_names: list[str]) -> _Statement:
    """Backlog counts and staged rows of every drain: one UNION ALL of per-drain GROUP BYs.

    A class without ``backlog_queryset()`` is asked for its ``backlog_counts()`` here and now
    (its own query); the statement then only adds the staged rows to it.
    """
    label = CharField()
    separate = {}
    parts = [
        StagedResult.objects.filter(drain__in=drain_names)
        .order_by()
        .values(_d=F("drain"))
        .annotate(_n=Count("pk"), _s=Value("staged", output_field=label))
        .values_list("_d", "_s", "_n")
    ]
    for name in drain_names:
        cls = registry.get(name)
        if hasattr(cls, "backlog_queryset"):
            parts.append(
                cls.backlog_queryset()
                .order_by()
                .values(_s=F(cls.backlog_status_field))
                .annotate(_n=Count("pk"), _d=Value(name, output_field=label))
                .values_list("_d", "_s", "_n")
            )
        else:
            separate[name] = cls.backlog_counts()  # not combinable (see the module docstring)
    union = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    sql, params = union.query.sql_with_params()

    def read(rows):
        counts = {name: {"pending": 0, "staged": 0, "done": 0, "failed": 0}
                  for name in drain_names}
        for name, known in separate.items():
            for status, n in known.items():
                if status in counts[name]:
                    counts[name][status] = n
        for drain, status, n in rows:
            if status in counts.get(drain, {}):
                counts[drain][status] = n
        return counts

    return _Statement(sql, list(params), read)


def _events(now: datetime, *, with_timeline: bool) -> _Statement:
    """(notes per drain name, the timeline): the newest NOTES_PER_SERVICE note events per drain
    of the last NOTES_WINDOW, and the newest TIMELINE_LENGTH events."""
    table = DrainEvent._meta.db_table
    columns, attnames = _columns(DrainEvent, skip={"data"})  # the snapshot shows no data
    select = ", ".join(columns)
    sql = f"""
        (SELECT {select}, 'note' AS part FROM (
            SELECT *, row_number() OVER (PARTITION BY drain ORDER BY at DESC, id DESC) AS rank
            FROM {table}
            WHERE (kind = 'note' OR kind LIKE 'supervisor%%') AND at >= %s) AS recent
         WHERE rank <= %s)
        UNION ALL
        (SELECT {select}, 'timeline' AS part
         FROM {table} ORDER BY at DESC, id DESC LIMIT %s)
    """

    def read(rows):
        notes: dict[str, list[DrainEvent]] = defaultdict(list)
        events = []
        for *values, part in rows:
            event = DrainEvent.from_db(connection.alias, attnames, values)
            (notes[event.drain] if part == "note" else events).append(event)
        order = lambda e: (e.at, e.id)  # noqa: E731 - newest first, as the timeline reads
        for drain_notes in notes.values():
            drain_notes.sort(key=order, reverse=True)
        events.sort(key=order, reverse=True)
        return notes, events

    params = [now - NOTES_WINDOW, NOTES_PER_SERVICE, TIMELINE_LENGTH if with_timeline else 0]
    return _Statement(sql, params, read)


# --- shaping --------------------------------------------------------------------------------------


def _event(event: DrainEvent) -> dict:
    return {
        "at": event.at,
        "drain": event.drain,
        "kind": event.kind,
        "actor": event.actor,
        "message": event.message,
    }


def _run(run: DrainRun | None, now: datetime) -> dict | None:
    if run is None:
        return None
    seen = run.last_checkpoint_at or run.started_at
    progress = None
    if run.backlog_at_start:
        progress = round(min(1.0, run.items_done / run.backlog_at_start), 4)
    return {
        "id": run.pk,
        "status": run.status,
        "trigger": run.trigger,
        "mode": run.mode,
        "host": run.host,
        "pid": run.pid,
        "backend_pid": run.backend_pid,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "last_checkpoint_at": run.last_checkpoint_at,
        "checkpoint_age_seconds": (
            max(0, int((now - seen).total_seconds())) if run.status == RunStatus.RUNNING else None
        ),
        "items_done": run.items_done,
        "items_failed": run.items_failed,
        "backlog_at_start": run.backlog_at_start,
        "progress": progress,
        "deadline": run.deadline,
        "error": run.error,
    }


def _first_line(text: str, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _hung_after(control: DrainControl | None) -> timedelta:
    seconds = (control.hung_after_seconds if control else None) or settings.DRAINS_HUNG_AFTER_SECONDS
    return timedelta(seconds=seconds)


def _running_state(run: DrainRun, hung_after: timedelta, now: datetime,
                   alive: bool | None) -> tuple[str, str]:
    where = f"run {run.pk} on {run.host} (pid {run.pid})"
    if alive is False:
        return State.FAILING, (
            f"{where} is marked running but no longer holds its lock: the process died; "
            "the supervisor will mark it crashed"
        )
    age = now - (run.last_checkpoint_at or run.started_at)
    if age > hung_after:
        return State.HUNG, (
            f"no checkpoint for {proj.span(age)} (limit {proj.span(hung_after)}) from {where}"
        )
    of = f" of {run.backlog_at_start}" if run.backlog_at_start else ""
    return State.RUNNING, (
        f"lock held by {where}: {run.items_done}{of} done, "
        f"last checkpoint {proj.span(age)} ago"
    )


def _failed_reason(run: DrainRun) -> str:
    error = _first_line(run.error)
    when = proj.short_time(run.finished_at or run.started_at)
    return f"last run {run.pk} {run.status} at {when}" + (f": {error}" if error else "")


def _drain_state(*, control, burst, current, last, backlog, next_fire, holder,
                 now) -> tuple[str, str]:
    if current is not None:
        # Alive exactly when the run's session holds the drain's lock (any session, when the
        # run has not recorded its backend pid yet).
        alive = holder is not None if current.backend_pid is None else holder == current.backend_pid
        return _running_state(current, _hung_after(control), now, alive)
    if holder is not None:
        return State.RUNNING, f"lock held by database session {holder}; its run is starting"
    if control is not None and not control.enabled:
        by = f" by {control.disabled_by}" if getattr(control, "disabled_by", None) else ""
        return State.DISABLED, f"disabled{by}: no run starts until it is enabled again"
    if control is not None and control.backoff_until and control.backoff_until > now:
        reason = _first_line(control.backoff_reason) or "rate limited"
        return State.BACKING_OFF, f"backing off until {proj.short_time(control.backoff_until)}: {reason}"
    if last is not None and last.status in FAILED_STATUSES:
        return State.FAILING, _failed_reason(last)
    if backlog["pending"] == 0:
        return State.IDLE, "backlog empty"
    if burst.active:
        return State.IDLE, (
            f"burst until {proj.short_time(burst.burst_until)}: {backlog['pending']} pending, "
            "waiting for the supervisor to start a run"
        )
    if next_fire is not None:
        return State.IDLE, f"{backlog['pending']} pending; next run {proj.short_time(next_fire)}"
    return State.IDLE, f"{backlog['pending']} pending; not scheduled: only a burst starts it"


def _job_state(*, current, last, next_fire, now) -> tuple[str, str]:
    if current is not None:
        return _running_state(current, _hung_after(None), now, current.backend_alive)
    if last is not None and last.status in FAILED_STATUSES:
        return State.FAILING, _failed_reason(last)
    after = f"; next {proj.short_time(next_fire)}" if next_fire else ""
    if last is None:
        return State.IDLE, f"never run{after}"
    when = proj.short_time(last.finished_at or last.started_at)
    return State.IDLE, f"last run {last.status} at {when}{after}"


def _backoff_end(control, now: datetime) -> datetime | None:
    if control is not None and control.backoff_until and control.backoff_until > now:
        return control.backoff_until
    return None


def _projection(*, name, backlog, burst, done_per_hour, now, backoff_until=None) -> tuple[dict, list]:
    pending = backlog["pending"] + backlog["staged"]
    if burst.active:
        deadline, kind = burst.burst_until, "burst"
    else:
        deadline, kind = bursts.upcoming_week_boundary(now), "week"
    # No item is done while a backoff is in force: the work resumes when it ends.
    start = max(now, backoff_until) if backoff_until else now
    p = proj.project(pending=pending, rate_per_hour=round(done_per_hour[-1], 2), now=start,
                     deadline=deadline, deadline_kind=kind)
    history = proj.backlog_history(pending=pending, done_per_bucket=[round(d) for d in
                                                                       done_per_hour], now=now)
    return p, history


@dataclass
class DrainChart:
    name: str
    projection: proj.Projection
    history: list[tuple[datetime, int]]


def snapshot(*, now: datetime | None = None, only: str | None = None) -> dict:
    """The whole operations snapshot (``only``: just one service, for the burst answer)."""
    now = now or timezone.now()
    services = _services()
    if only is not None:
        services = [s for s in services if s.name == only]
    drain_names = [s.drain for s in services if s.drain]
    run_names = [s.name for s in services]

    burst_states = bursts.get_drain_bursts()
    holders = drain_lock_holders(drain_names)
    controls, (current, last), done, backlogs, (notes, recent) = _fetch([
        _controls(drain_names),
        _runs(run_names),
        _done_per_hour(drain_names, now),
        _backlogs(drain_names),
        _events(now, with_timeline=only is None),
    ])

    entries = []
    for service in services:
        next_fire_at = next_fire(service.expression, now) if service.expression else None
        entry = {
            "name": service.name,
            "command": service.command,
            "kind": service.kind,
            "schedule": service.expression,
            "next_fire_at": next_fire_at,
            "current_run": _run(current.get(service.name), now),
            "last_run": _run(last.get(service.name), now),
            "notes": [_event(e) for e in notes.pop(service.name, [])],
            "enabled": None,
            "burst_until": None,
            "burst_active": False,
            "backoff": None,
            "backlog": None,
            "projection": None,
        }
        if service.drain:
            control = controls.get(service.name)
            burst = burst_states[service.name]
            backlog = backlogs[service.name]
            state, reason = _drain_state(
                control=control, burst=burst, current=current.get(service.name),
                last=last.get(service.name), backlog=backlog, next_fire=next_fire_at,
                holder=holders.get(service.name), now=now,
            )
            p, history = _projection(name=service.name, backlog=backlog, burst=burst,
                                     done_per_hour=done[service.name], now=now,
                                     backoff_until=_backoff_end(control, now))
            backoff = None
            if control is not None and control.backoff_until and control.backoff_until > now:
                backoff = {
                    "until": control.backoff_until,
                    "reason": control.backoff_reason,
                    "observed_at": control.backoff_observed_at,
                }
            entry.update(
                enabled=control.enabled if control is not None else True,
                burst_until=burst.effective_until,
                burst_active=burst.active,
                backoff=backoff,
                backlog=backlog,
                projection={
                    "deadline": p.deadline,
                    "deadline_kind": p.deadline_kind,
                    "rate_per_hour": p.rate_per_hour,
                    "finish_at": p.finish_at,
                    "fraction_by_deadline": p.fraction_by_deadline,
                    "on_time": p.on_time,
                    "text": p.text,
                    "history": [{"at": t, "backlog": v} for t, v in history],
                },
            )
        else:
            state, reason = _job_state(
                current=current.get(service.name), last=last.get(service.name),
                next_fire=next_fire_at, now=now,
            )
        entry["state"], entry["reason"] = state, reason
        entries.append(entry)

    leftover = sorted((e for events in notes.values() for e in events), key=lambda e: e.at,
                      reverse=True)
    return {
        "generated_at": now,
        "week_boundary": bursts.upcoming_week_boundary(now),
        "services": entries,
        "notes": [] if only is not None else [_event(e) for e in leftover],
        "timeline": [_event(e) for e in recent],
    }


def service_entry(name: str, *, now: datetime | None = None) -> dict:
    """One drain's entry (raises ``registry.UnknownDrain``)."""
    registry.get(name)
    return snapshot(now=now, only=name)["services"][0]


def drain_chart(name: str, *, now: datetime | None = None) -> DrainChart:
    """The projection and backlog history of one drain, for the burn-down SVG."""
    registry.get(name)
    now = now or timezone.now()
    burst = bursts.get_drain_burst(name)
    backlogs, done, controls = _fetch([_backlogs([name]), _done_per_hour([name], now),
                                       _controls([name])])
    backlog, done = backlogs[name], done[name]
    p, history = _projection(name=name, backlog=backlog, burst=burst, done_per_hour=done, now=now,
                             backoff_until=_backoff_end(controls.get(name), now))
    return DrainChart(name, p, history)
