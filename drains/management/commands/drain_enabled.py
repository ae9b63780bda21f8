"""``manage.py drain_enabled NAME on|off|status``: the CLI to ``drains.controls``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from drains import registry
from drains.controls import is_enabled, set_drain_enabled
from drains.events import cli_actor


class Command(BaseCommand):
    help = (
        "Enable or disable a drain, or show whether it is enabled. A disabled drain starts no "
        "run (cron, supervisor or burst) until it is enabled again. Run by an operator, never "
        "by cron."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="The drain, e.g. halacha or metadata.")
        parser.add_argument(
            "action", choices=["on", "off", "status"], help="on (enable), off (disable), or status."
        )
        parser.add_argument(
            "--reason", default="", help="Why, recorded in the event timeline (e.g. 'bad model')."
        )
        parser.add_argument(
            "--actor", default=None, help="Who is making the change (default: cli:<your login name>)."
        )

    def handle(self, *args, name, action, reason, actor, **options):
        try:
            if action != "status":
                changed = set_drain_enabled(
                    name=name, enabled=action == "on", actor=cli_actor(actor), reason=reason
                )
            enabled = is_enabled(name)
        except registry.UnknownDrain as exc:
            raise CommandError(str(exc)) from None
        state = "enabled" if enabled else "disabled"
        if action == "status":
            self.stdout.write(f"{name}: {state}")
        else:
            self.stdout.write(f"{name}: {state}" + ("" if changed else " (no change)"))
