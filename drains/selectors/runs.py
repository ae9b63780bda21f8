"""What the runtime and the supervisor read while they work (see drains/selectors/__init__.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict, cast

from django.db import connection
from django.db.models import Count, Max, Q

from drains.locks import drain_lock_holders
from drains.models import (
    DrainControl,
    DrainEvent,
    DrainRun,
    EventKind,
    RunStatus,
    StagedResult,
)
from drains.quota.kinds import LimitKind

# --- the runtime --------------------------------------------------------------------------------


def latest_event(*, drain: str, kind: str) -> Mapping[str, Any] | None:
    """The newest event of ``kind`` for ``drain``: ``{"message", "at"}`` or None."""
    return (
        DrainEvent.objects.filter(drain=drain, kind=kind)
        .order_by("-at", "-id")
        .values("message", "at")
        .first()
    )


def latest_run_start(*, drain: str) -> datetime | None:
    return (
        DrainRun.objects.filter(drain=drain)
        .order_by("-started_at")
        .values_list("started_at", flat=True)
        .first()
    )


def event_exists(*, drain: str, kind: str, message: str) -> bool:
    """Whether this exact event was already recorded (notes are written once)."""
    return DrainEvent.objects.filter(drain=drain, kind=kind, message=message).exists()


def controls_for_run(*, drain: str, quota_key: str, now: datetime) -> Sequence[Mapping[str, Any]]:
    """The control rows a running drain re-reads between chunks: its own, and those of drains
    on its quota that back off now (``name``, ``enabled``, ``quota_key``, ``backoff_until``)."""
    same_quota = Q(quota_key=quota_key, backoff_until__gt=now) if quota_key else Q(pk__in=[])
    return list(
        DrainControl.objects.filter(Q(name=drain) | same_quota).values(
            "name", "enabled", "quota_key", "backoff_until"
        )
    )


@dataclass(frozen=True)
class ProbeEvidence:
    """What ``policy.probe_due`` is asked with, for one quota."""

    drains: list[str]  # the drains on the quota (the drain alone when it has no key)
    backoff_until: datetime | None  # the reset of the latest backoff recorded on the quota
    last_success_at: datetime | None  # a probe that went through, or a checkpoint with work
    backoff: dict[str, Any] | None = None  # the latest backoff event's data (its kind, breaker)


def probe_evidence(*, drain: str, quota_key: str) -> ProbeEvidence:
    """The quota's latest backoff (from its BACKOFF events, which outlive the backoff fields
    the supervisor clears) and the latest sign since that a call on it worked. Three queries."""
    peers = {drain}
    if quota_key:
        peers.update(DrainControl.objects.filter(quota_key=quota_key).values_list("name", flat=True))
    names = sorted(peers)
    latest = (
        # An operator's "retry now" ends the backoff early: its event is the latest reset.
        DrainEvent.objects.filter(drain__in=names, kind__in=[EventKind.BACKOFF, EventKind.RETRY_NOW])
        .order_by("-at", "-id")
        .values_list("at", "data")
        .first()
    )
    last_backoff = latest[1] if latest else None
    until = None
    if last_backoff and last_backoff.get("until"):
        until = datetime.fromisoformat(last_backoff["until"])
    probed = DrainEvent.objects.filter(
        drain__in=names, kind=EventKind.PROBE, data__outcome="ok"
    ).aggregate(at=Max("at"))["at"]
    runs = DrainRun.objects.filter(drain__in=names, items_done__gt=0)
    if latest is not None:
        # Work of a run that started after the backoff: the run that met the limit checkpoints
        # its last chunk after recording it, which says nothing of the quota since.
        runs = runs.filter(started_at__gte=latest[0])
    worked = runs.aggregate(at=Max("last_checkpoint_at"))["at"]
    seen = [at for at in (probed, worked) if at is not None]
    return ProbeEvidence(
        drains=names, backoff_until=until, last_success_at=max(seen) if seen else None,
        backoff=last_backoff,
    )


def _latest_host_block(drains: Iterable[str], *, after: datetime | None = None):
    """(time, data) of the latest ``backoff`` event of a host fault among ``drains`` (after
    ``after``, when given), or None."""
    blocks = DrainEvent.objects.filter(
        drain__in=list(drains), kind=EventKind.BACKOFF, data__kind=LimitKind.HOST_FAULT.value
    )
    if after is not None:
        blocks = blocks.filter(at__gt=after)
    return blocks.order_by("-at", "-id").values_list("at", "data").first()


def last_host_block(*, drain: str, quota_key: str) -> timedelta | None:
    """How long the quota's latest block by a host fault lasted (its ``backoff`` event's until
    minus its time), if no call on the quota has worked since; None otherwise. Four queries."""
    evidence = probe_evidence(drain=drain, quota_key=quota_key)
    latest = _latest_host_block(evidence.drains, after=evidence.last_success_at)
    if latest is None or not latest[1].get("until"):
        return None
    return datetime.fromisoformat(latest[1]["until"]) - latest[0]


def host_fault_item_since_worked(*, drain: str, quota_key: str) -> str | None:
    """The item the drain's latest host-fault block met, if a call on the quota has worked since
    that block: a second host fault on that item is then the item's own (a request the service
    always fails, a decision that always times out), not the host's. Four queries."""
    evidence = probe_evidence(drain=drain, quota_key=quota_key)
    latest = _latest_host_block([drain])
    if latest is None or not latest[1].get("item") or evidence.last_success_at is None:
        return None
    return str(latest[1]["item"]) if evidence.last_success_at > latest[0] else None


def newest_runs(names: Iterable[str]) -> dict[str, DrainRun]:
    """The newest DrainRun per name (a drain, or a job's command), in one query (DISTINCT ON)."""
    rows = (
        DrainRun.objects.filter(drain__in=list(names))
        .order_by("drain", "-started_at", "-id")
        .distinct("drain")
    )
    return {run.drain: run for run in rows}


# --- the supervisor -----------------------------------------------------------------------------


class ControlValues(TypedDict):
    """A drain's control row as ``DrainControl.objects.values()`` reads it: the supervisor's
    input. A drain without a row yet is planned with the defaults of the first six
    (drains/supervisor/tick.py); the others come with a row."""

    name: str
    enabled: bool
    burst_until: datetime | None
    backoff_until: datetime | None
    hung_after_seconds: int | None
    quota_key: str
    id: NotRequired[int]
    burst_by: NotRequired[str]
    backoff_reason: NotRequired[str]
    backoff_observed_at: NotRequired[datetime | None]
    backoff_kind: NotRequired[str]
    backoff_model: NotRequired[str]
    backoff_from_run_id: NotRequired[int | None]
    updated_by: NotRequired[str]
    updated_at: NotRequired[datetime]


@dataclass
class DrainState:
    name: str
    control: ControlValues | None
    running: list[DrainRun]
    holder: int | None
    staged: int


_LAST_PROGRESS_SQL = f"""
SELECT d.name, (
    SELECT max(r.last_checkpoint_at) FROM {DrainRun._meta.db_table} r
    WHERE r.drain = ANY(string_to_array(d.peers, E'\\n'))
      AND r.started_at >= d.observed AND r.last_checkpoint_at > d.observed
      AND r.items_done > 0 AND r.id IS DISTINCT FROM d.from_run
)
FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::bigint[])
    AS d(name, peers, observed, from_run)
"""


def supervisor_states(
    names: list[str],
) -> tuple[dict[str, DrainState], dict[str, ControlValues]]:
    """Everything a tick decides on, in a fixed number of queries whatever the history."""
    # values() with no field names reads every column, as ControlValues names them.
    controls: dict[str, ControlValues] = {
        row["name"]: cast(ControlValues, row) for row in DrainControl.objects.values()
    }
    # Runs before lock holders: a run seen running whose lock is then free has died (or has
    # just finished, and then the guarded state change below does nothing).
    running: dict[str, list[DrainRun]] = {name: [] for name in names}
    for run in DrainRun.objects.filter(status=RunStatus.RUNNING, drain__in=names).order_by("pk"):
        running[run.drain].append(run)
    holders = drain_lock_holders(names)
    staged = {
        row["drain"]: row["n"]
        for row in StagedResult.objects.filter(drain__in=names)
        .values("drain")
        .order_by()
        .annotate(n=Count("id"))
    }
    states = {
        name: DrainState(
            name=name,
            control=controls.get(name),
            running=running[name],
            holder=holders[name],
            staged=staged.get(name, 0),
        )
        for name in names
    }
    return states, controls


def last_progress(
    states: dict[str, DrainState], controls: Mapping[str, ControlValues]
) -> dict[str, datetime | None]:
    """Per drain with a backoff: the latest checkpoint with items done after the backoff was
    observed, by a run of this drain or of any drain on the same quota (the quota is what was
    limited) other than the run that hit the limit. One query for all of them."""

    def peers(control: ControlValues) -> str:
        key = control.get("quota_key") or ""
        same = {c["name"] for c in controls.values() if key and c["quota_key"] == key}
        return "\n".join(sorted(same | {control["name"]}))

    rows = [
        s.control
        for s in states.values()
        if s.control and s.control["backoff_until"] and s.control["backoff_observed_at"]
    ]
    if not rows:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            _LAST_PROGRESS_SQL,
            [
                [r["name"] for r in rows],
                [peers(r) for r in rows],
                [r["backoff_observed_at"] for r in rows],
                [r["backoff_from_run_id"] for r in rows],
            ],
        )
        return dict(cursor.fetchall())


_RECENT_EVENTS_SQL = f"""
SELECT d.name, e.kind, e.message
FROM unnest(%s::text[]) AS d(name)
CROSS JOIN LATERAL (
    SELECT kind, message FROM {DrainEvent._meta.db_table}
    WHERE drain = d.name AND actor = %s
    ORDER BY at DESC, id DESC
    LIMIT %s
) AS e
"""
RECENT_EVENTS = 10


def recent_events(names: list[str], *, actor: str) -> dict[str, list[tuple[str, str]]]:
    """Each drain's latest supervisor events, newest first: one query, index probes only."""
    recent: dict[str, list[tuple[str, str]]] = {name: [] for name in names}
    with connection.cursor() as cursor:
        cursor.execute(_RECENT_EVENTS_SQL, [names, actor, RECENT_EVENTS])
        for name, kind, message in cursor.fetchall():
            recent[name].append((kind, message))
    return recent
