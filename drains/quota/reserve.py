"""The reserve kept for the account's owner, per quota key, and the one service that changes a
quota key's policy (``set_quota_policy``).

``reserves_for`` reads the ``QuotaPolicy`` row, each empty field falling back to its setting
(DRAINS_QUOTA_WEEKLY_RESERVE, DRAINS_QUOTA_SESSION_RESERVE, DRAINS_QUOTA_RESERVE_RELEASE_HOURS).
``set_quota_policy`` is the only writer of ``QuotaPolicy``'s operator fields: the command, the
REST API and the admin call it and show its ``QuotaPolicyError`` as it is. It validates
everything before it writes anything, locks the row, writes and records an audit event, in one
transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from drains.events import record_event
from drains.models import EventKind
from drains.quota.models import QuotaPolicy

MAX_RESERVE = 0.9
MAX_RELEASE_HOURS = 168.0  # the week: a release longer than that would start before the reset
FIELDS = ("weekly_reserve", "session_reserve", "reserve_release_hours", "autopilot")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()
"""Pass for a field that is to stay as it is."""

DEFAULT = None
"""Pass for a reserve or the release hours to go back to the setting's default."""


@dataclass(frozen=True)
class Reserves:
    """What a quota key keeps for its owner: fractions of the weekly and 5-hour windows, and the
    hours before the weekly reset over which the weekly reserve is released (0 = never)."""

    weekly: float
    session: float
    release_hours: float


class QuotaPolicyError(ValueError):
    """Bad input to ``set_quota_policy``; the message is one line an operator can act on.
    ``field`` names what was wrong (``quota``, a policy field, or ``body``), for the API."""

    def __init__(self, message: str, *, field: str = "body"):
        super().__init__(message)
        self.field = field


def default_reserves() -> Reserves:
    return Reserves(
        weekly=float(settings.DRAINS_QUOTA_WEEKLY_RESERVE),
        session=float(settings.DRAINS_QUOTA_SESSION_RESERVE),
        release_hours=float(settings.DRAINS_QUOTA_RESERVE_RELEASE_HOURS),
    )


def reserves_from(policy: QuotaPolicy | None) -> Reserves:
    """A policy row's reserves, its empty fields the settings' defaults (no query)."""
    default = default_reserves()
    if policy is None:
        return default
    return Reserves(
        weekly=default.weekly if policy.weekly_reserve is None else policy.weekly_reserve,
        session=default.session if policy.session_reserve is None else policy.session_reserve,
        release_hours=(
            default.release_hours
            if policy.reserve_release_hours is None
            else policy.reserve_release_hours
        ),
    )


def reserves_for(quota_key: str) -> Reserves:
    """The reserves in force for ``quota_key`` (one query)."""
    return reserves_from(QuotaPolicy.objects.filter(quota_key=quota_key).first())


def _fraction(name: str, value) -> float | None:
    label = name.replace("_", " ")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QuotaPolicyError(
            f"{label} {value!r} is not a number: give a fraction 0..{MAX_RESERVE}, e.g. 0.1",
            field=name,
        )
    try:
        number = float(value)
    except ValueError:
        raise QuotaPolicyError(
            f"{label} {value!r} is not a number: give a fraction 0..{MAX_RESERVE}, e.g. 0.1",
            field=name,
        ) from None
    if not math.isfinite(number) or not 0 <= number <= MAX_RESERVE:
        raise QuotaPolicyError(
            f"{label} {value!r} is outside 0..{MAX_RESERVE}: give a fraction of the window, "
            "e.g. 0.1 keeps 10 % for the owner",
            field=name,
        )
    return number


def _hours(value) -> float | None:
    if value is None:
        return None
    message = (
        f"reserve release hours {value!r} is not a number of hours 0..{MAX_RELEASE_HOURS:g} "
        "(0 = never release the weekly reserve)"
    )
    field = "reserve_release_hours"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QuotaPolicyError(message, field=field)
    try:
        number = float(value)
    except ValueError:
        raise QuotaPolicyError(message, field=field) from None
    if not math.isfinite(number) or not 0 <= number <= MAX_RELEASE_HOURS:
        raise QuotaPolicyError(message, field=field)
    return number


def _switch(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return value.strip().lower() == "on"
    raise QuotaPolicyError(f"autopilot {value!r} is not on or off", field="autopilot")


def validate_quota_key(quota_key) -> str:
    if not isinstance(quota_key, str) or not quota_key.strip():
        raise QuotaPolicyError(
            "the quota key is empty: name one (manage.py quota lists them)", field="quota"
        )
    key = quota_key.strip()
    if len(key) > QuotaPolicy._meta.get_field("quota_key").max_length:
        raise QuotaPolicyError(
            f"the quota key {key[:40]!r}... is longer than 200 characters", field="quota"
        )
    return key


def resolve_quota_key(quota_key: str | None) -> str:
    """The quota key an operator means: the one given, which must be known (a drain recorded it
    at a run start, or a reading or a policy names it), or the only one known when none is given.
    Raises ``QuotaPolicyError`` otherwise."""
    from drains.quota.store import known_quota_keys

    known = known_quota_keys()
    if quota_key is None:
        if len(known) == 1:
            return known[0]
        if not known:
            raise QuotaPolicyError(
                "no quota key is known yet: a drain records its key at its first run "
                "(e.g. manage.py drain_halacha)", field="quota"
            )
        raise QuotaPolicyError(
            f"{len(known)} quota keys are known; name one with --quota: {', '.join(known)}",
            field="quota",
        )
    key = validate_quota_key(quota_key)
    if key not in known:
        listed = ", ".join(known) if known else "none yet"
        raise QuotaPolicyError(f"unknown quota key {key!r}; known: {listed}", field="quota")
    return key


def set_quota_policy(
    *,
    quota_key: str,
    actor: str,
    weekly_reserve=UNSET,
    session_reserve=UNSET,
    reserve_release_hours=UNSET,
    autopilot=UNSET,
) -> QuotaPolicy:
    """Change a quota key's policy; ``UNSET`` leaves a field, ``None`` (``DEFAULT``) returns a
    reserve or the release hours to the setting's default.

    Raises ``QuotaPolicyError`` (nothing written) on a bad value or when nothing is to change.
    Records a ``quota_policy`` DrainEvent with the old and new values. Turning the autopilot off
    is handed to ``drains.quota.autopilot.on_autopilot_turned_off`` (it ends the autopilot's
    bursts in the same transaction).
    """
    key = validate_quota_key(quota_key)
    changes: dict = {}
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
            from drains.quota.autopilot import on_autopilot_turned_off

            on_autopilot_turned_off(quota_key=key, actor=actor)
    return policy


def _shown(value, name: str) -> str:
    if value is None:
        return "default"
    if name == "autopilot":
        return "on" if value else "off"
    if name == "reserve_release_hours":
        return f"{value:g} h"
    return f"{value:.0%}"
