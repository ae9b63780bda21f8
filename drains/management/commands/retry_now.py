"""``manage.py retry_now NAME``: the page's and the API's "retry now", for the shell."""

from __future__ import annotations

from django.core.management.base import CommandError

from drains import operator, registry, validate
from drains.operator_commands import add_actor_argument, command_actor


class Command(validate.CheckedCommand):
    help = (
        "Clear the backoff or the host-fault block in force on a drain (and the drains on its "
        "quota), after a mended login, network or CLI: the next run makes one probe call first, "
        "then goes on. Recorded in the timeline. Run by an operator, never by cron."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "name", type=validate.choice(registry.names, "drain"),
            help="The drain (manage.py schedule lists them).",
        )
        add_actor_argument(parser)

    def handle(self, *args, name: str, actor: str | None, **options):
        try:
            done = operator.retry_now(name=name, actor=command_actor(actor))
        except operator.Refused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(done.message)
