"""``manage.py drain_enabled NAME on|off|status``: the CLI to ``drains.controls``."""

from __future__ import annotations

from django.core.management.base import CommandError

from drains import registry, validate
from drains.controls import is_enabled, set_drain_enabled
from drains.events import cli_actor

ACTOR_MAX = 150  # DrainControl.updated_by and DrainEvent.actor
REASON_MAX = 500  # part of the event's one-line message


class Command(validate.CheckedCommand):
    help = (
        "Enable or disable a drain, or show whether it is enabled. A disabled drain starts no "
        "run (cron, supervisor or burst) until it is enabled again. Run by an operator, never "
        "by cron."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "name", type=validate.choice(registry.names, "drain"),
            help="The drain, e.g. halacha or metadata.",
        )
        parser.add_argument(
            "action", choices=["on", "off", "status"], help="on (enable), off (disable), or status."
        )
        parser.add_argument(
            "--reason", default="", type=validate.text(REASON_MAX, blank=True, what="a reason"),
            help=f"Why, recorded in the event timeline (e.g. 'bad model'; at most {REASON_MAX} "
            "characters).",
        )
        parser.add_argument(
            "--actor", default=None, type=validate.text(ACTOR_MAX, what="a name"),
            help="Who is making the change (default: cli:<your login name>; at most "
            f"{ACTOR_MAX} characters).",
        )

    def handle(self, *args, name, action, reason, actor, **options):
        try:
            if action != "status":
                changed = set_drain_enabled(
                    name=name, enabled=action == "on", actor=cli_actor(actor)[:ACTOR_MAX],
                    reason=reason,
                )
            enabled = is_enabled(name)
        except registry.UnknownDrain as exc:
            raise CommandError(str(exc)) from None
        state = "enabled" if enabled else "disabled"
        if action == "status":
            self.stdout.write(f"{name}: {state}")
        else:
            self.stdout.write(f"{name}: {state}" + ("" if changed else " (no change)"))
