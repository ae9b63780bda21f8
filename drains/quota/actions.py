"""What follows a limit's backoff, by its kind: the one place that acts on it.

- **A weekly limit** (all models or one model) whose reset is at or after a burst's deadline
  (``policy.weekly_outlasts_burst``): the burst has nothing left to spend, so it ends now, with a
  ``burst_ended`` note: "weekly limit reached; it resets Mon 09:00, after the burst deadline
  Sat 18:00: the burst ended early".
- **A spend cap or exhausted extra usage** (``policy.LimitPlan.OPERATOR``) is money: every drain
  on the quota is paused (disabled, through drains/controls.py) until an operator enables it
  again, a ``paused`` note says why and how to go on, and an email goes out at once to the
  digest's recipients (DIGEST_RECIPIENTS, Django's EMAIL_* settings). A failed email is a note.

``act_on_limit`` is called by the runtime right after it records a backoff (drains/runner/loop.py)
and ``end_outlasted_bursts`` by the supervisor's step 1 (a burst started while a weekly backoff
was in force). Per-minute limits and overloads never get here: the runtime paces those
(drains/runner/pacing.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone

from drains import registry
from drains.bursts import end_burst_early
from drains.clock import format_local
from drains.controls import set_drain_enabled
from drains.events import record_event
from drains.models import DrainControl, EventKind
from drains.quota import policy
from drains.quota.kinds import Kind, describe_kind, weekly_limit_message

logger = logging.getLogger(__name__)


def act_on_limit(
    *,
    drain: str,
    drains: Iterable[str],
    kind: Kind,
    reset_at: datetime,
    reason: str,
    actor: str,
) -> list[str]:
    """After a backoff on ``drains`` (every drain on the quota): end the bursts a weekly limit
    outlasts, or pause the drains on a spend cap. Returns what was done, one line each."""
    names = [name for name in drains if name in registry.names()]
    plan = policy.limit_plan(kind.kind)
    if plan == policy.LimitPlan.OPERATOR:
        return pause_for_operator(
            observed_by=drain, drains=names, kind=kind, reset_at=reset_at, reason=reason,
            actor=actor,
        )
    if kind.kind in policy.WEEKLY_KINDS:
        return end_outlasted_bursts(drains=names, kind=kind, reset_at=reset_at, actor=actor)
    return []


def end_outlasted_bursts(
    *, drains: Iterable[str], kind: Kind, reset_at: datetime, actor: str
) -> list[str]:
    """End every burst among ``drains`` that the weekly limit resetting at ``reset_at`` outlasts."""
    now = timezone.now()
    done = []
    bursts = DrainControl.objects.filter(name__in=list(drains), burst_until__isnull=False)
    for name, burst_until in bursts.values_list("name", "burst_until"):
        if burst_until is None:
            continue  # the filter left none out; this tells the type checker
        if not policy.weekly_outlasts_burst(
            kind=kind.kind, reset_at=reset_at, burst_until=burst_until, now=now
        ):
            continue
        message = weekly_limit_message(kind=kind, reset_at=reset_at, burst_until=burst_until)
        if end_burst_early(
            name=name,
            until=burst_until,
            message=message,
            actor=actor,
            data={"reset_at": reset_at.isoformat(), "kind": kind.kind, "model": kind.model},
        ):
            done.append(f"{name}: {message}")
    return done


def pause_for_operator(
    *,
    observed_by: str,
    drains: Iterable[str],
    kind: Kind,
    reset_at: datetime,
    reason: str,
    actor: str,
) -> list[str]:
    """Pause ``drains`` (a spend cap or extra usage), note it, and email the operators once."""
    described = describe_kind(kind.kind, kind.model)
    paused = [
        name
        for name in drains
        if set_drain_enabled(
            name=name, enabled=False, actor=actor,
            reason=f"{described}: paused until an operator enables it again",
        )
    ]
    if not paused:
        return []  # already paused by an earlier call: no second email
    what = ", ".join(paused)
    enable = "; ".join(f"manage.py drain_enabled {name} on" for name in paused)
    message = (
        f"{described} reached (seen by {observed_by}); it says access returns "
        f"{format_local(reset_at)}. Paused until an operator acts: {what}. Raise the limit (or "
        f"wait for the reset), then enable again: {enable}. The refusal: {reason}"
    )
    recipients = list(settings.DIGEST_RECIPIENTS)
    note = message + _email_operators(
        subject=f"[drains] {described}: {what} paused", body=message, recipients=recipients
    )
    for name in paused:
        record_event(
            drain=name,
            kind=EventKind.PAUSED,
            message=note,
            actor=actor,
            data={
                "kind": kind.kind,
                "model": kind.model,
                "reset_at": reset_at.isoformat(),
                "observed_by": observed_by,
                "emailed": recipients,
            },
        )
    return [f"{name}: paused ({described})" for name in paused]


def _email_operators(*, subject: str, body: str, recipients: list[str]) -> str:
    """Email ``body`` to ``recipients`` (DIGEST_RECIPIENTS); what to add to the note: to whom, or
    why nobody was emailed (a failure to send becomes part of the note, never lost)."""
    if not recipients:
        return " (nobody emailed: DIGEST_RECIPIENTS is empty)"
    try:
        EmailMessage(subject=subject, body=body + "\n", to=recipients).send(fail_silently=False)
    except Exception as exc:  # noqa: BLE001 - the failure becomes a note, never lost
        logger.error("could not email the operators about the pause: %s", exc)
        return f" (the email to {', '.join(recipients)} FAILED: {type(exc).__name__}: {exc})"
    return f" (emailed to {', '.join(recipients)})"
