"""``manage.py drain_enabled NAME on|off|status``: the CLI to ``drains.controls``."""

from __future__ import annotations

from drains import validate
from drains.controls import is_enabled, set_drain_enabled
from drains.operator_commands import SwitchCommand

REASON_MAX = 500  # part of the event's one-line message


class Command(SwitchCommand):
    help = (
        "Enable or disable a drain, or show whether it is enabled. A disabled drain starts no "
        "run (cron, supervisor or burst) until it is enabled again. Run by an operator, never "
        "by cron."
    )
    action_help = "on (enable), off (disable), or status."

    def add_options(self, parser):
        parser.add_argument(
            "--reason", default="", type=validate.text(REASON_MAX, blank=True, what="a reason"),
            help=f"Why, recorded in the event timeline (e.g. 'bad model'; at most {REASON_MAX} "
            "characters).",
        )

    def show(self, name):
        return f"{name}: {'enabled' if is_enabled(name) else 'disabled'}"

    def switch(self, name, on, *, actor, reason="", **options):
        changed = set_drain_enabled(name=name, enabled=on, actor=actor, reason=reason)
        return self.show(name) + ("" if changed else " (no change)")
