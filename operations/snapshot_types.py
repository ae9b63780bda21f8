"""The operations snapshot's shape (issue 19): what operations/selectors.py builds and the API,
the page, /metrics and the burst answer read, as TypedDicts, so that mypy checks every key a
builder writes and every key a reader asks for.

Plain dicts at run time (TypedDicts are dicts), so ``as_json`` and the API's JSON are what they
were: datetimes here are ``datetime`` objects until ``operations.serializers.as_json`` turns them
into ISO 8601 strings. ``operations/serializers.py`` documents the same shape for the OpenAPI
schema (a test holds the two equal). Key order is the builders' (dict literals), which the JSON
keeps. ``X | None``: the key is always there, its value may be null; ``NotRequired``: the key is
not always there.
"""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict


class EventFields(TypedDict):
    """An event as the snapshot's notes and timeline list it (``operations.runs.event_fields``)."""

    id: int
    url: str
    at: datetime
    drain: str  # "" for an event of no drain
    kind: str
    actor: str
    message: str


class RunFields(TypedDict):
    """What every surface shows of a run's row (``operations.runs.run_fields``)."""

    id: int
    url: str
    status: str  # a RunStatus
    trigger: str  # a Trigger
    mode: str  # a RunMode
    host: str
    pid: int
    backend_pid: int | None
    started_at: datetime
    finished_at: datetime | None
    last_checkpoint_at: datetime | None


class RunEntry(RunFields):
    """A service's ``current_run`` or ``last_run``: the run's fields, its progress and error."""

    checkpoint_age_seconds: int | None  # running runs only
    items_done: int
    items_failed: int
    backlog_at_start: int | None
    progress: float | None  # items_done / backlog_at_start, 0..1
    deadline: datetime | None  # the burst deadline at start
    error: str  # one line ("" when none)
    error_kind: str  # an ErrorKind, "" when none
    models: list[str]  # most calls first


class BackoffEntry(TypedDict):
    """A drain's own backoff in force (the entry's ``backoff``; null when none is)."""

    until: datetime
    reason: str
    observed_at: datetime | None
    kind: str  # a LimitKind, "" for a backoff written before kinds were recorded
    model: str  # for weekly_model: the model
    kind_label: str  # the kind, for people


class BacklogEntry(TypedDict):
    """A drain's backlog per status (``drains.selectors.rows.Backlog``, keys in its order)."""

    pending: int
    staged: int  # paid-for results waiting to be promoted
    done: int
    failed: int
    oldest_pending_at: datetime | None  # None: nothing pending, or its items do not say


class HistoryPoint(TypedDict):
    at: datetime
    backlog: int


class ProjectionEntry(TypedDict):
    """A drain's finish-time projection (``operations.projection.Projection``) and its history."""

    deadline: datetime  # the burst's, else the weekly reset
    deadline_kind: str  # "burst" | "week"
    rate_per_hour: float
    rate_text: str
    finish_at: datetime | None  # None: backlog empty, or no rate to project from
    fraction_by_deadline: float | None
    on_time: bool | None
    text: str
    measured: bool
    history: list[HistoryPoint]  # oldest first, ending now


class ServiceFields(TypedDict):
    """What ``_entry`` writes of every service. A job's (and the supervisor's) drain fields stay
    None (``burst_active`` False); a drain's ``_drain_entry`` fills them in, so an entry of kind
    "drain" always has its ``enabled``, ``backlog`` and ``projection``."""

    name: str  # the drain name for drains, else the command
    command: str | None  # None: a drain cron does not start
    kind: str  # "drain" | "supervisor" | "job"
    schedule: str | None  # the cron expression
    next_fire_at: datetime | None
    current_run: RunEntry | None
    last_run: RunEntry | None
    notes: list[EventFields]
    enabled: bool | None
    burst_until: datetime | None  # the burst's deadline while one is active
    burst_active: bool
    backoff: BackoffEntry | None
    backlog: BacklogEntry | None
    projection: ProjectionEntry | None
    why_not_run_now: str | None


class ServiceEntry(ServiceFields):
    """One service of the snapshot's ``services``: its fields, then its state and reason."""

    state: str  # an operations.states.State
    reason: str
    # Set by the /operations page (operations/views.py) on a drain's entry for its template;
    # never in the API's answer.
    failed_url: NotRequired[str]


class ProductEntry(TypedDict):
    """What one drain made in a quota week (``drains.selectors.usage.Produced``)."""

    drain: str
    product: str  # its plural name, as the drain names it (e.g. "records")
    count: int
    cost_usd: float  # the drain's runs' cost in the week
    cost_each: float | None  # cost_usd / count; None when it made none


class UsageEntry(TypedDict):
    """One quota key's week (``operations.usage.usage_entry``)."""

    quota_key: str  # "" for drains that never recorded one
    week_start: datetime
    week_end: datetime
    current: bool
    runs: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: float
    calls: int
    refused_calls: int
    items_done: int
    items_failed: int
    products: list[ProductEntry]  # each producing drain's own product (none: no drain produces)
    text: str


class QuotaWindowEntry(TypedDict):
    """One window of a quota key (``drains.selectors.quota.WindowState``)."""

    window: str  # five_hour, seven_day, seven_day_opus, ...
    label: str
    utilization: float
    resets_at: datetime | None
    status: str  # "" when the signal did not say
    observed_at: datetime
    stale: bool
    ceiling: float
    reserve: float
    releasing: bool
    text: str


class AutopilotEntry(TypedDict):
    enabled: bool
    state: str
    reason: str
    planned_start: datetime | None


class ForecastEntry(TypedDict):
    week_end_utilization: float
    lapse: float
    resets_at: datetime | None


class QuotaKeyEntry(TypedDict):
    """One quota key of the snapshot's ``quotas`` (``operations.quota.quota_json``)."""

    key: str
    signal_seen: bool
    using_overage: bool
    drains: list[str]
    windows: list[QuotaWindowEntry]
    weekly_reserve: float
    session_reserve: float
    reserve_release_hours: float
    ceilings: dict[str, float]  # per window
    autopilot: AutopilotEntry | None
    forecast: ForecastEntry | None  # None without a weekly reading
    text: str


class Snapshot(TypedDict):
    """The whole snapshot (``operations.selectors.snapshot``). With ``only`` (one service, the
    burst answer) its ``notes``, ``usage`` and ``quotas`` are empty lists, never absent."""

    generated_at: datetime
    week_boundary: datetime
    services: list[ServiceEntry]
    notes: list[EventFields]  # the notes of no service
    timeline: list[EventFields]
    usage: list[UsageEntry]
    quotas: list[QuotaKeyEntry]
