"""``manage.py burst NAME on [--until ISO] | off | status``: the CLI to the burst service."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from drains import registry, validate
from drains.bursts import (
    DEFAULT_DEADLINE,
    BurstState,
    get_drain_burst,
    set_drain_burst,
)
from drains.clock import format_local
from drains.events import cli_actor


def describe(state: BurstState) -> str:
    if not state.changed:
        return f"{state.name}: {state.notice} (no change)"
    if state.active and state.burst_until is not None:  # an active burst has a deadline
        line = f"{state.name}: burst on until {format_local(state.burst_until)}"
        return f"{line} ({state.notice})" if state.notice else line
    if state.burst_until is not None:
        ended = format_local(state.burst_until)
        return f"{state.name}: burst off (the deadline {ended} has passed)"
    return f"{state.name}: burst off"


ACTOR_MAX = 150  # DrainControl.updated_by and DrainEvent.actor


class Command(validate.CheckedCommand):
    help = (
        "Turn a drain's burst on (until the upcoming Saturday 18:00 Asia/Jerusalem, or --until), "
        "off, or show it. Run by an operator, never by cron; the supervisor acts on the result."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "name", type=validate.choice(registry.names, "drain"),
            help="The drain, e.g. halacha or metadata.",
        )
        parser.add_argument(
            "action", choices=["on", "off", "status"], help="on, off, or status (show only)."
        )
        parser.add_argument(
            "--until",
            type=validate.text(100, what="an ISO 8601 time"),
            help="With on: the deadline, ISO 8601 with a UTC offset (e.g. "
            "2026-12-05T18:00:00+02:00); no later than the upcoming Saturday 18:00 "
            "Asia/Jerusalem. Default: that boundary.",
        )
        parser.add_argument(
            "--actor",
            type=validate.text(ACTOR_MAX, what="a name"),
            help="Who makes the change, for the timeline (default: cli:<login name>; at most "
            f"{ACTOR_MAX} characters).",
        )

    def handle(self, *args, name, action, until, actor, **options):
        if until is not None and action != "on":
            raise validate.BadInput("--until only goes with 'on'.")
        actor = cli_actor(actor)[:ACTOR_MAX]
        try:
            if action == "status":
                state = get_drain_burst(name)
            elif action == "on":
                state = set_drain_burst(name=name, until=until or DEFAULT_DEADLINE, actor=actor)
            else:
                state = set_drain_burst(name=name, until=None, actor=actor)
        except registry.UnknownDrain as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise validate.BadInput(" ".join(exc.messages)) from None
        self.stdout.write(describe(state))
