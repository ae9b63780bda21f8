"""Writing DrainEvents: the audit trail every operator- or supervisor-made change leaves."""

from __future__ import annotations

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
