"""Switching a drain on or off: the only code that writes ``DrainControl.enabled``.

A disabled drain starts no run, bursts included (the runtime exits at once and the supervisor
does not start it). Admin actions and ``manage.py drain_enabled`` call ``set_drain_enabled``;
every change writes a DrainEvent naming who made it.
"""

from __future__ import annotations

from django.db import transaction

from drains import registry
from drains.events import record_event
from drains.models import DrainControl, EventKind


def set_drain_enabled(*, name: str, enabled: bool, actor: str, reason: str = "") -> bool:
    """Enable or disable drain ``name``. Returns whether anything changed.

    Raises ``registry.UnknownDrain`` for a name no drain is registered under.
    """
    registry.get(name)
    with transaction.atomic():
        DrainControl.objects.get_or_create(name=name)
        control = DrainControl.objects.select_for_update().get(name=name)
        if control.enabled == enabled:
            return False
        control.enabled = enabled
        control.updated_by = actor
        control.save(update_fields=["enabled", "updated_by", "updated_at"])
        word = "enabled" if enabled else "disabled"
        record_event(
            drain=name,
            kind=EventKind.ENABLED if enabled else EventKind.DISABLED,
            message=f"drain {word}" + (f": {reason}" if reason else ""),
            actor=actor,
            data={"enabled": enabled, "reason": reason},
        )
    return True


def is_enabled(name: str) -> bool:
    registry.get(name)
    value = DrainControl.objects.filter(name=name).values_list("enabled", flat=True).first()
    return True if value is None else value
