"""Writing DrainEvents: the audit trail every operator- or supervisor-made change leaves."""

from __future__ import annotations

import getpass

from django.utils import timezone

from drains.models import DrainEvent, DrainRun

# A message longer than this is clipped here, once, for every writer (an exception's text, a
# backend's answer). The timeline shows its first line; the event's own page
# (/operations/events/<id>) shows it whole, up to this bound.
EVENT_MESSAGE_MAX_CHARS = 10_000
_ACTOR_MAX_CHARS = DrainEvent._meta.get_field("actor").max_length or 150


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record_event(
    *,
    drain: str,
    kind: str,
    message: str,
    actor: str,
    run: DrainRun | None = None,
    data: dict | None = None,
) -> DrainEvent:
    """One event; its message and actor clipped to what the timeline keeps."""
    return DrainEvent.objects.create(
        drain=drain,
        run=run,
        actor=clip(actor or "unknown", _ACTOR_MAX_CHARS),
        kind=kind,
        message=clip(message, EVENT_MESSAGE_MAX_CHARS),
        data=data or {},
        at=timezone.now(),
    )


def cli_actor(given: str | None = None) -> str:
    """Who a command acts for: ``--actor`` when given, else ``cli:<login>`` (one format for every
    command, so the timeline tells a shell apart from the page, the API and the supervisor)."""
    return given or f"cli:{getpass.getuser()}"
