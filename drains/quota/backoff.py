"""Backoff: the only code that writes, clears or reads the backoff fields of DrainControl.

A rate limit belongs to a quota, not to one drain: ``record_backoff`` writes it on every drain
that draws on the same quota (``quota_key``, remembered by ``set_quota_key`` at each run start),
``clear_backoff`` removes one that the supervisor found stale, and ``backoff_in_force`` says
which backoff stops a drain now. ``record_probe`` and ``record_probe_wait`` write the events of
the probe after a reset (``policy.probe_due``): its outcome, and a drain holding for it. Whether a backoff is in force or stale is decided by
drains/rules.py; this module reads and writes the rows. Each function is one transaction (or
one statement); each change writes a DrainEvent or is recorded by its caller's decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from drains.clock import format_local
from drains.events import record_event
from drains.models import DrainControl, DrainRun, EventKind
from drains.quota import policy
from drains.quota.kinds import Kind, LimitKind, describe_kind


@dataclass(frozen=True)
class Backoff:
    drain: str  # whose DrainControl row holds it
    until: datetime
    reason: str
    observed_at: datetime | None
    quota_key: str
    kind: str = ""
    model: str = ""


def set_quota_key(*, drain: str, quota_key: str) -> None:
    """Remember which quota the drain's extractor draws on (set at every run start)."""
    DrainControl.objects.filter(name=drain).exclude(quota_key=quota_key).update(
        quota_key=quota_key, updated_at=timezone.now()
    )


def record_backoff(
    *,
    drain: str,
    quota_key: str,
    reset_at: datetime,
    reason: str,
    run: DrainRun | None = None,
    actor: str = "runtime",
    kind: Kind | None = None,
    breaker: bool = False,
    item: str = "",
) -> list[str]:
    """Write a rate limit's backoff on every drain that draws on ``quota_key`` (and ``drain``).
    ``breaker``: the block is the runner's breaker's (its events say so; a probe lifts it only
    by going through). ``item``: the item the call that met it was for (a host fault's).

    One transaction; an event per drain. Returns the names of the drains now backing off.
    """
    if timezone.is_naive(reset_at):
        raise ValueError("reset_at must be timezone-aware")
    now = timezone.now()
    kind = kind or Kind()
    with transaction.atomic():
        DrainControl.objects.get_or_create(name=drain)
        same_quota = Q(name=drain) | Q(quota_key=quota_key) if quota_key else Q(name=drain)
        targets = DrainControl.objects.filter(same_quota)
        names = sorted(targets.values_list("name", flat=True))
        targets.update(
            backoff_until=reset_at,
            backoff_reason=reason,
            backoff_observed_at=now,
            backoff_from_run=run,
            backoff_kind=kind.kind,
            backoff_model=kind.model,
            updated_by=actor,
            updated_at=now,
        )
        for name in names:
            _record_backoff_event(name, drain=drain, quota_key=quota_key, reset_at=reset_at,
                                  reason=reason, run=run, actor=actor, kind=kind, breaker=breaker,
                                  item=item if name == drain else "")
    return names


def _record_backoff_event(
    name: str,
    *,
    drain: str,
    quota_key: str,
    reset_at: datetime,
    reason: str,
    run: DrainRun | None,
    actor: str,
    kind: Kind,
    breaker: bool = False,
    item: str = "",
) -> None:
    """The ``backoff`` event of one drain backing off (``drain`` observed the limit)."""
    described = describe_kind(kind.kind, kind.model)
    shared = "" if name == drain else f" (shares quota {quota_key!r} with {drain})"
    record_event(
        drain=name,
        run=run if name == drain else None,
        actor=actor,
        kind=EventKind.BACKOFF,
        message=(
            f"blocked until {format_local(reset_at)}, then one probe call{shared}: {reason}"
            if kind.kind == LimitKind.HOST_FAULT
            else f"{described}: rate limited until {format_local(reset_at)}{shared}: {reason}"
        )[:2000],
        data={
            "until": reset_at.isoformat(),
            "kind": kind.kind,
            "model": kind.model,
            "quota_key": quota_key,
            "observed_by": drain,
            "run": run.pk if run else None,
            **({"breaker": True} if breaker else {}),
            **({"item": item} if item else {}),
        },
    )


def clear_backoff(*, drain: str, until: datetime, actor: str, whole_quota: bool = False) -> bool:
    """Clear ``drain``'s backoff if it is still the one that ends at ``until``; with
    ``whole_quota``, every copy of it on the drains of the same quota too (``record_backoff``
    wrote one on each: an operator's retry now lifts them all).

    Guarded: a backoff written again meanwhile (a newer rate limit) is left as it is. Returns
    whether it was cleared; the caller (the supervisor, the operator) records the decision as its
    event.
    """
    which = Q(name=drain)
    if whole_quota:
        key = DrainControl.objects.filter(name=drain).values_list("quota_key", flat=True).first()
        if key:
            which |= Q(quota_key=key)
    return bool(
        DrainControl.objects.filter(which, backoff_until=until).update(
            backoff_until=None,
            backoff_reason="",
            backoff_observed_at=None,
            backoff_from_run=None,
            backoff_kind="",
            backoff_model="",
            updated_by=actor,
            updated_at=timezone.now(),
        )
    )


def backoff_in_force(
    *, drain: str, quota_key: str | None = None, now: datetime | None = None
) -> Backoff | None:
    """The latest backoff that stops ``drain`` now, or None. One query.

    It is the drain's own, or that of any drain on the same quota (``quota_key``, default the
    key stored on the drain's row): a rate limit belongs to the quota, not to one drain.
    """
    now = now or timezone.now()
    if quota_key is None:
        same_quota = Q(
            quota_key__in=DrainControl.objects.filter(name=drain)
            .exclude(quota_key="")
            .values("quota_key")
        )
    else:
        same_quota = Q(quota_key=quota_key) if quota_key else Q(pk__in=[])
    rows = list(
        DrainControl.objects.filter(Q(name=drain) | same_quota, backoff_until__gt=now).values(
            "name", "backoff_until", "backoff_reason", "backoff_observed_at", "quota_key",
            "backoff_kind", "backoff_model",
        )
    )
    # Every row but the drain's own came in through the quota key (given or stored).
    key = quota_key if quota_key is not None else next(
        (r["quota_key"] for r in rows if r["name"] != drain), ""
    )
    row = policy.blocking_backoff(drain=drain, quota_key=key, controls=rows, now=now)
    if row is None:
        return None
    return Backoff(
        drain=row["name"],
        until=row["backoff_until"],
        reason=row["backoff_reason"],
        observed_at=row["backoff_observed_at"],
        quota_key=row["quota_key"],
        kind=row["backoff_kind"],
        model=row["backoff_model"],
    )


def record_probe(
    *,
    drain: str,
    quota_key: str,
    run: DrainRun | None,
    ok: bool,
    actor: str = "runtime",
    until: datetime | None = None,
) -> None:
    """Record the outcome of the one call a run made alone after the quota's reset.

    ``ok``: the quota answers again, and the run (and every drain on the quota) opens up to
    full concurrency. Refused: the new backoff until ``until`` was written by
    ``record_backoff`` just before, and no further call is made.
    """
    if ok:
        message = f"probe after reset: ok (quota {quota_key!r} answers again)"
    else:
        when = format_local(until) if until else "an unknown reset"
        message = f"probe refused: backing off until {when}"
    record_event(
        drain=drain,
        run=run,
        actor=actor,
        kind=EventKind.PROBE,
        message=message,
        data={
            "outcome": "ok" if ok else "refused",
            "quota_key": quota_key,
            "until": until.isoformat() if until else None,
            "run": run.pk if run else None,
        },
    )


def record_probe_wait(*, drain: str, quota_key: str, prober: str | None, actor: str) -> None:
    """Say once that this drain holds back while another drain on the quota probes it."""
    who = f" (by {prober})" if prober else ""
    record_event(
        drain=drain,
        actor=actor,
        kind=EventKind.PROBE_WAIT,
        message=f"holds until the probe after the reset of quota {quota_key!r}{who} has "
        "succeeded; no extractor call meanwhile",
        data={"quota_key": quota_key, "prober": prober},
    )
