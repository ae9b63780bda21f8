"""What the commands an operator types share, written once: who acts (``--actor``, else
``cli:<login>``: drains/events.py ``cli_actor``, the one actor format of every command), the
``--database`` option of the schema commands, and ``SwitchCommand``, the base of the commands
that switch something of one drain on or off or show it (``burst``, ``drain_enabled``).

Thin, as every command: the subclass makes one service call and says the result in one line.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.management.base import CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from drains import registry, validate
from drains.events import cli_actor

ACTOR_MAX = 150  # DrainControl.updated_by and DrainEvent.actor
ACTIONS = ("on", "off", "status")


def add_actor_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--actor",
        type=validate.text(ACTOR_MAX, what="a name"),
        help="Who makes the change, for the timeline (default: cli:<login name>; at most "
        f"{ACTOR_MAX} characters).",
    )


def command_actor(given: str | None) -> str:
    """Who a command's change is recorded as: ``--actor`` when given, else ``cli:<login>``,
    cut to what the control row and the event keep."""
    return cli_actor(given)[:ACTOR_MAX]


def add_database_argument(parser: CommandParser, *, what: str) -> None:
    """``--database ALIAS``, one of the configured aliases; ``what`` the command does to it."""
    parser.add_argument(
        "--database",
        default=DEFAULT_DB_ALIAS,
        choices=tuple(connections),
        help=f'The database alias to {what} (default "default").',
    )


class SwitchCommand(validate.CheckedCommand):
    """``manage.py <command> NAME on|off|status``: a subclass sets ``help`` and ``action_help``,
    may add its own options (``add_options``), and says the state in one line: ``show`` for
    status, ``switch`` for on and off (made as ``command_actor``). A drain no one registered
    is refused in one line."""

    action_help: ClassVar[str]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "name", type=validate.choice(registry.names, "drain"),
            help="The drain (manage.py schedule lists them).",
        )
        parser.add_argument("action", choices=list(ACTIONS), help=self.action_help)
        self.add_options(parser)
        add_actor_argument(parser)

    def add_options(self, parser: CommandParser) -> None:
        """The subclass's own options (listed before ``--actor``)."""

    def handle(self, *args: Any, name: str, action: str, actor: str | None, **options: Any) -> None:
        try:
            if action == "status":
                line = self.show(name)
            else:
                line = self.switch(name, action == "on", actor=command_actor(actor), **options)
        except registry.UnknownDrain as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(line)

    def show(self, name: str) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def switch(self, name: str, on: bool, *, actor: str, **options: Any) -> str:  # pragma: no cover
        raise NotImplementedError
