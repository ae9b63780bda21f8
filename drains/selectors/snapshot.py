"""The reads behind the operations snapshot: every drains table the page and the API show, in
a CONSTANT number of round trips however many drains, runs and events exist.

Each read is a ``Statement`` (its SQL and parameters, and how to turn its rows into data);
``fetch`` sends several together, so the snapshot's own reads cost one round trip:

a. every DrainControl row (``controls``), and every backoff in force (``backoffs``, for "run
   now": a backoff on the drain's quota key stops it too);
b. per run name, the newest running run and the newest finished one (``runs``): a UNION ALL of
   two LATERAL joins over ``unnest(names)``, each an index probe on (drain, started_at), with
   ``pg_stat_get_activity(backend_pid)`` telling whether a running job's session is there;
c. items done per drain per hour for the last ``HISTORY_HOURS`` hours (``done_per_hour``): a
   ``generate_series`` join over the runs that reach into the window;
d. backlog counts of every drain plus staged rows (``backlogs``): ONE ``UNION ALL`` over the
   framework's items table (drains/items.py) and staging, grouped by drain;
e. per drain, the runs reaching into the projection's window (``recent_runs``), for its rate;
f. notes (the newest ``NOTES_PER_SERVICE`` events per drain of the last day whose kind is one
   of ``NOTE_KINDS``) and the event timeline (``events``).

Shaping these into the snapshot (states, reasons, the projection) is operations/selectors.py's.
Nothing here writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import OuterRef, Subquery

from drains.models import (
    NOTE_KINDS,
    DrainControl,
    DrainEvent,
    DrainRun,
    EventKind,
    Item,
    StagedResult,
)
from drains.selectors.rows import Backlog, BackoffRow, ControlRow, CurrentRun, RunSpan

HISTORY_HOURS = 12
NOTES_PER_SERVICE = 5
NOTES_WINDOW = timedelta(hours=24)
TIMELINE_LENGTH = 30


@dataclass(frozen=True)
class Statement:
    sql: str
    params: list
    read: Callable[[list[tuple]], object]


OLDEST = "oldest"  # the backlogs statement's row for the oldest pending item


def fetch(statements: list[Statement]) -> list:
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


def controls(drain_names: list[str]) -> Statement:
    # ``disabled_by``: who last switched the drain off (its newest "disabled" event), since
    # ``updated_by`` also names whoever last toggled a burst.
    disabled_by = (
        DrainEvent.objects.filter(drain=OuterRef("name"), kind=EventKind.DISABLED)
        .order_by("-at", "-id")
        .values("actor")[:1]
    )
    sql, params = (
        DrainControl.objects.filter(name__in=drain_names)
        .annotate(disabled_by=Subquery(disabled_by))
        .query.sql_with_params()
    )
    attnames = [f.attname for f in DrainControl._meta.concrete_fields]

    def read(rows) -> dict[str, ControlRow]:
        controls = {}
        for row in rows:
            control = DrainControl.from_db(connection.alias, attnames, row[: len(attnames)])
            controls[control.name] = ControlRow(control, disabled_by=row[len(attnames)])
        return controls

    return Statement(sql, list(params), read)


def backoffs(now: datetime) -> Statement:
    """Every backoff in force (name, quota_key, backoff_until): a rate limit belongs to the
    quota, so a drain is stopped by its own and by any on its quota key (drains/quota/policy.py
    ``blocking_backoff``), whichever drains the snapshot shows. As many rows as backoffs."""
    sql, params = (
        DrainControl.objects.filter(backoff_until__gt=now)
        .values_list("name", "quota_key", "backoff_until")
        .query.sql_with_params()
    )

    def read(rows) -> list[BackoffRow]:
        return [BackoffRow(name, quota_key, until) for name, quota_key, until in rows]

    return Statement(sql, list(params), read)


def runs(names: list[str]) -> Statement:
    """(current running run, newest finished run) per name; the running one as a
    ``CurrentRun``, with whether its recorded session is there."""
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

    def read(rows) -> tuple[dict[str, CurrentRun], dict[str, DrainRun]]:
        current: dict[str, CurrentRun] = {}
        last: dict[str, DrainRun] = {}
        for *values, slot, alive in rows:
            run = DrainRun.from_db(connection.alias, attnames, values)
            if slot == "current":
                # Not recorded (no backend pid): liveness unknown.
                current[run.drain] = CurrentRun(
                    run, backend_alive=alive if run.backend_pid is not None else None)
            else:
                last[run.drain] = run
        return current, last

    return Statement(sql, [names, names], read)


# The runs of ``names`` that reach into [since, now): those started in it plus, per drain, the
# one started last before it (the single-runner lock means no earlier run can still reach in);
# index probes on (drain, started_at), however long the history. ``spans`` gives each its start
# ``s``, items ``n`` and ``e``, where its counters are known: its last checkpoint while running,
# its end once finished. Parameters, in order: names, since, now, names, since.
_SPANS = f"""
    picked AS (
        SELECT * FROM {DrainRun._meta.db_table}
        WHERE drain = ANY(%s) AND started_at >= %s AND started_at < %s
        UNION ALL
        SELECT r.* FROM unnest(%s::text[]) AS n(name)
        CROSS JOIN LATERAL (
            SELECT * FROM {DrainRun._meta.db_table} WHERE drain = n.name AND started_at < %s
            ORDER BY started_at DESC LIMIT 1) r),
    spans AS (
        SELECT drain, started_at AS s, items_done AS n, concurrency, status, busy_seconds,
               extractor,
               GREATEST(started_at, CASE WHEN status = 'running'
                    THEN COALESCE(last_checkpoint_at, started_at)
                    ELSE COALESCE(finished_at, last_checkpoint_at, started_at) END) AS e
        FROM picked)"""


def done_per_hour(names: list[str], now: datetime) -> Statement:
    """Items done per drain in each of the last HISTORY_HOURS hours, oldest first.

    A run's items are spread evenly over its span (``_SPANS``: start to its last checkpoint, or
    to its end when finished): counters are only known per checkpoint, so this is the best
    estimate.
    """
    window_start = now - timedelta(hours=HISTORY_HOURS)
    sql = f"""
        WITH buckets AS (
            SELECT i, %s::timestamptz - (i + 1) * interval '1 hour' AS b0,
                      %s::timestamptz - i * interval '1 hour' AS b1
            FROM generate_series(0, %s - 1) AS i),
        {_SPANS}
        SELECT s.drain, b.i,
               SUM(CASE WHEN s.e = s.s THEN s.n
                        ELSE s.n * EXTRACT(EPOCH FROM LEAST(s.e, b.b1) - GREATEST(s.s, b.b0))
                                 / EXTRACT(EPOCH FROM s.e - s.s) END)
        FROM spans s JOIN buckets b ON s.s < b.b1 AND s.e > b.b0
        WHERE s.n > 0
        GROUP BY s.drain, b.i
    """
    params = [now, now, HISTORY_HOURS, names, window_start, now, names, window_start]

    def read(rows):
        result = {name: [0.0] * HISTORY_HOURS for name in names}
        for drain, i, done in rows:
            result[drain][HISTORY_HOURS - 1 - i] = float(done)
        return result

    return Statement(sql, params, read)


def recent_runs(names: list[str], now: datetime, since: datetime) -> Statement:
    """Per drain, the runs that reach into ``since``..``now``, newest first, as ``RunSpan``s
    for the projection's rate (operations/projection.py), read from the same ``_SPANS`` as
    ``done_per_hour``; rows grow with the runs in the window, the statement count does not.
    """
    sql = f"""
        WITH {_SPANS}
        SELECT drain, s, e, n, concurrency, status, busy_seconds, extractor
        FROM spans ORDER BY drain, s DESC
    """

    def read(rows) -> dict[str, list[RunSpan]]:
        result: dict[str, list[RunSpan]] = {name: [] for name in names}
        for drain, start, end, items, concurrency, status, busy, extractor in rows:
            result[drain].append(RunSpan(start, end, items, concurrency, status, busy, extractor))
        return result

    return Statement(sql, [names, since, now, names, since], read)


def _read_backlogs(rows, drain_names: list[str]) -> dict[str, Backlog]:
    counts: dict[str, dict[str, int]] = {name: {} for name in drain_names}
    oldest: dict[str, datetime] = {}
    for drain, status, n in rows:
        if drain not in counts:
            continue
        if status == OLDEST:
            if n is not None:
                oldest[drain] = datetime.fromtimestamp(n, UTC)
        else:
            counts[drain][status] = n
    return {
        name: Backlog(pending=c.get("pending", 0), staged=c.get("staged", 0),
                      done=c.get("done", 0), failed=c.get("failed", 0),
                      oldest_pending_at=oldest.get(name))
        for name, c in counts.items()
    }


def backlogs(drain_names: list[str]) -> Statement:
    """Every drain's items per status, its staged rows, and when its first pending item (in the
    order it is worked, which is the order items arrive) arrived, as Unix seconds: one UNION
    ALL over the items table (drains/items.py) and staging, whatever the drains' sources."""
    items, staged = Item._meta.db_table, StagedResult._meta.db_table
    sql = f"""
        SELECT drain, status, count(*) FROM {items} WHERE drain = ANY(%s) GROUP BY drain, status
        UNION ALL
        SELECT drain, 'staged', count(*) FROM {staged} WHERE drain = ANY(%s) GROUP BY drain
        UNION ALL
        SELECT d.name, '{OLDEST}', (
            SELECT extract(epoch FROM i.arrived_at)::bigint FROM {items} i
            WHERE i.drain = d.name AND i.status = 'pending' ORDER BY i.ref LIMIT 1)
        FROM unnest(%s::text[]) AS d(name)
    """
    return Statement(sql, [drain_names, drain_names, drain_names],
                     lambda rows: _read_backlogs(rows, drain_names))


def events(now: datetime, *, with_timeline: bool) -> Statement:
    """(notes per drain name, the timeline): the newest NOTES_PER_SERVICE note events per drain
    of the last NOTES_WINDOW, and the newest TIMELINE_LENGTH events."""
    table = DrainEvent._meta.db_table
    columns, attnames = _columns(DrainEvent, skip={"data"})  # the snapshot shows no data
    select = ", ".join(columns)
    sql = f"""
        (SELECT {select}, 'note' AS part FROM (
            SELECT *, row_number() OVER (PARTITION BY drain ORDER BY at DESC, id DESC) AS rank
            FROM {table}
            WHERE kind = ANY(%s) AND at >= %s) AS recent
         WHERE rank <= %s)
        UNION ALL
        (SELECT {select}, 'timeline' AS part
         FROM {table} ORDER BY at DESC, id DESC LIMIT %s)
    """

    def read(rows):
        notes: dict[str, list[DrainEvent]] = defaultdict(list)
        events: list[DrainEvent] = []
        for *values, part in rows:
            event = DrainEvent.from_db(connection.alias, attnames, values)
            (notes[event.drain] if part == "note" else events).append(event)
        order = lambda e: (e.at, e.id)  # noqa: E731 - newest first, as the timeline reads
        for drain_notes in notes.values():
            drain_notes.sort(key=order, reverse=True)
        events.sort(key=order, reverse=True)
        return notes, events

    params = [
        [str(kind) for kind in NOTE_KINDS],
        now - NOTES_WINDOW,
        NOTES_PER_SERVICE,
        TIMELINE_LENGTH if with_timeline else 0,
    ]
    return Statement(sql, params, read)
