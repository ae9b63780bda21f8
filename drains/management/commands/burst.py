"""``manage.py burst NAME on [--until ISO] | off | status``: the CLI to the burst service."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from drains import validate
from drains.bursts import (
    DEFAULT_DEADLINE,
    BurstState,
    get_drain_burst,
    set_drain_burst,
)
from drains.clock import format_local
from drains.operator_commands import SwitchCommand


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


class Command(SwitchCommand):
    help = (
        "Turn a drain's burst on (until the upcoming Saturday 18:00 Asia/Jerusalem, or --until), "
        "off, or show it. Run by an operator, never by cron; the supervisor acts on the result."
    )
    action_help = "on, off, or status (show only)."

    def add_options(self, parser):
        parser.add_argument(
            "--until",
            type=validate.text(100, what="an ISO 8601 time"),
            help="With on: the deadline, ISO 8601 with a UTC offset (e.g. "
            "2026-12-05T18:00:00+02:00); no later than the upcoming Saturday 18:00 "
            "Asia/Jerusalem. Default: that boundary.",
        )

    def handle(self, *args, **options):
        if options["until"] is not None and options["action"] != "on":
            raise validate.BadInput("--until only goes with 'on'.")
        super().handle(*args, **options)

    def show(self, name):
        return describe(get_drain_burst(name))

    def switch(self, name, on, *, actor, until=None, **options):
        try:
            state = set_drain_burst(
                name=name, until=(until or DEFAULT_DEADLINE) if on else None, actor=actor
            )
        except ValidationError as exc:
            raise validate.BadInput(" ".join(exc.messages)) from None
        return describe(state)
