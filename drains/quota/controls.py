"""The operator's quota policy: the one write path (validate, lock the row, write, audit, in one
transaction) and what follows it (turning the autopilot off ends its bursts).

Above both the reserves (drains/quota/reserve.py, which validates and reads the policy) and the
autopilot (drains/quota/autopilot.py), so neither imports the other for it. Called by
``manage.py quota set``, the REST API and the admin.
"""

from __future__ import annotations

from django.db import transaction

from drains.events import record_event
from drains.models import EventKind
from drains.quota.autopilot import on_autopilot_turned_off
from drains.quota.models import QuotaPolicy
from drains.quota.reserve import (
    FIELDS,
    UNSET,
    QuotaPolicyError,
    _fraction,
    _hours,
    _switch,
    validate_quota_key,
)


def set_quota_policy(
    *,
    quota_key: str,
    actor: str,
    weekly_reserve: object = UNSET,
    session_reserve: object = UNSET,
    reserve_release_hours: object = UNSET,
    autopilot: object = UNSET,
) -> QuotaPolicy:
    """Change a quota key's policy; ``UNSET`` leaves a field, ``None`` (``DEFAULT``) returns a
    reserve or the release hours to the setting's default.

    Raises ``QuotaPolicyError`` (nothing written) on a bad value or when nothing is to change.
    Records a ``quota_policy`` DrainEvent with the old and new values. Turning the autopilot off
    is handed to ``drains.quota.autopilot.on_autopilot_turned_off`` (it ends the autopilot's
    bursts in the same transaction).
    """
    key = validate_quota_key(quota_key)
    changes = _changes(
        weekly_reserve=weekly_reserve,
        session_reserve=session_reserve,
        reserve_release_hours=reserve_release_hours,
        autopilot=autopilot,
    )
    with transaction.atomic():
        QuotaPolicy.objects.get_or_create(quota_key=key)
        policy = QuotaPolicy.objects.select_for_update().get(quota_key=key)
        before = {name: getattr(policy, name) for name in FIELDS}
        for name, value in changes.items():
            setattr(policy, name, value)
        policy.updated_by = actor
        policy.save(update_fields=[*changes, "updated_by", "updated_at"])
        after = {name: getattr(policy, name) for name in FIELDS}
        said = ", ".join(f"{name} {_shown(after[name], name)}" for name in changes)
        record_event(
            drain="",
            kind=EventKind.QUOTA_POLICY,
            message=f"quota {key}: {said}",
            actor=actor,
            data={"quota_key": key, "before": before, "after": after},
        )
        if before["autopilot"] and not after["autopilot"]:
            # Its bursts end in the same transaction (the autopilot's own rule).
            on_autopilot_turned_off(quota_key=key, actor=actor)
    return policy


def _changes(
    *,
    weekly_reserve: object,
    session_reserve: object,
    reserve_release_hours: object,
    autopilot: object,
) -> dict[str, float | bool | None]:
    """The fields to change, each validated (``UNSET``: left out); ``QuotaPolicyError`` on a bad
    value or when nothing is to change."""
    changes: dict[str, float | bool | None] = {}
    if weekly_reserve is not UNSET:
        changes["weekly_reserve"] = _fraction("weekly_reserve", weekly_reserve)
    if session_reserve is not UNSET:
        changes["session_reserve"] = _fraction("session_reserve", session_reserve)
    if reserve_release_hours is not UNSET:
        changes["reserve_release_hours"] = _hours(reserve_release_hours)
    if autopilot is not UNSET:
        changes["autopilot"] = _switch(autopilot)
    if not changes:
        raise QuotaPolicyError(
            "nothing to change: give a weekly reserve, a session reserve, the reserve release "
            "hours or the autopilot"
        )
    return changes


def _shown(value: object, name: str) -> str:
    if value is None:
        return "default"
    if name == "autopilot":
        return "on" if value else "off"
    if name == "reserve_release_hours":
        return f"{value:g} h"
    return f"{value:.0%}"
