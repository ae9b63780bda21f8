"""``manage.py burst NAME on [--until ISO] | off | status``: the CLI to the burst service."""

from __future__ import annotations

import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from drains import registry
from drains.bursts import (
    DEFAULT_DEADLINE,
    BurstState,
    get_drain_burst,
    set_drain_burst,
)
from drains.clock import format_local


def describe(state: BurstState) -> str:
    if not state.changed:
        return f"{state.name}: {state.notice} (no change)"
    if state.active:
        line = f"{state.name}: burst on until {format_local(state.burst_until)}"
        return f"{line} ({state.notice})" if state.notice else line
    if state.burst_until is not None:
        ended = format_local(state.burst_until)
        return f"{state.name}: burst off (the deadline {ended} has passed)"
    return f"{state.name}: burst off"


class Command(BaseCommand):
    help = (
        "Turn a drain's burst on (until the upcoming Saturday 18:00 Asia/Jerusalem, or --until), "
        "off, or show it. Run by an operator, never by cron; the supervisor acts on the result."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The drain, e.g. halacha or metadata.")
        parser.add_argument(
            "action", choices=["on", "off", "status"], help="on, off, or status (show only)."
        )
        parser.add_argument(
            "--until",
            help="With on: the deadline, ISO 8601 with a UTC offset (e.g. "
            "2026-12-05T18:00:00+02:00); no later than the upcoming Saturday 18:00 "
            "Asia/Jerusalem. Default: that boundary.",
        )
        parser.add_argument(
            "--actor",
            help="Who makes the change, for the timeline (default: cli:<login name>).",
        )

    def handle(self, *args, name, action, until, actor, **options):
        if until is not None and action != "on":
            raise CommandError("--until only goes with 'on'.")
        actor = actor or f"cli:{getpass.getuser()}"
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
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(describe(state))
