"""record_event clips what it writes, once, for every writer."""

from __future__ import annotations

import pytest

from drains.events import EVENT_MESSAGE_MAX_CHARS, record_event
from drains.models import DrainEvent, EventKind

pytestmark = pytest.mark.django_db


def test_a_long_message_and_actor_are_clipped_with_an_ellipsis():
    record_event(drain="halacha", kind=EventKind.NOTE, message="m" * 50_000, actor="a" * 400)
    event = DrainEvent.objects.get()
    assert len(event.message) == EVENT_MESSAGE_MAX_CHARS and event.message.endswith("m…")
    assert len(event.actor) == 150 and event.actor.endswith("…")


def test_a_short_message_is_kept_whole():
    record_event(drain="halacha", kind=EventKind.NOTE, message="kept", actor="")
    event = DrainEvent.objects.get()
    assert (event.message, event.actor) == ("kept", "unknown")
