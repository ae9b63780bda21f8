"""Writing DrainEvents: the audit trail every operator- or supervisor-made change leaves."""

from __future__ import annotations

import getpass

from django.utils import timezone

from drains.models import DrainEvent, DrainRun


def record_event(
    *,
    drain: str,
    kind: str,
    message: str,
    actor: str,
    run: DrainRun | None = None,
    data: dict | None = None,
) -> DrainEvent:
    return DrainEvent.objects.create(
        drain=drain,
        run=run,
        actor=actor or "unknown",
        kind=kind,
        message=message,
        data=data or {},
        at=timezone.now(),
    )


def cli_actor(given: str | None = None) -> str:
    """Who a command acts for: ``--actor`` when given, else ``cli:<login>`` (one format for every
    command, so the timeline tells a shell apart from the page, the API and the supervisor)."""
    return given or f"cli:{getpass.getuser()}"
