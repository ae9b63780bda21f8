"""The reserve kept for the account's owner, per quota key, and the validation of a quota key's
policy.

``reserves_for`` reads the ``QuotaPolicy`` row, each empty field falling back to its setting
(DRAINS_QUOTA_WEEKLY_RESERVE, DRAINS_QUOTA_SESSION_RESERVE, DRAINS_QUOTA_RESERVE_RELEASE_HOURS).
The one writer of ``QuotaPolicy``'s operator fields is drains/quota/controls.py
``set_quota_policy``: the command, the REST API and the admin call it and show its
``QuotaPolicyError`` as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings

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


def _fraction(name: str, value: object) -> float | None:
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


def _hours(value: object) -> float | None:
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


def _switch(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return value.strip().lower() == "on"
    raise QuotaPolicyError(f"autopilot {value!r} is not on or off", field="autopilot")


def validate_quota_key(quota_key: object) -> str:
    if not isinstance(quota_key, str) or not quota_key.strip():
        raise QuotaPolicyError(
            "the quota key is empty: name one (manage.py quota lists them)", field="quota"
        )
    key = quota_key.strip()
    max_length = QuotaPolicy._meta.get_field("quota_key").max_length  # 200, set on the field
    if max_length is not None and len(key) > max_length:
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
                "(e.g. manage.py drain NAME)", field="quota"
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
