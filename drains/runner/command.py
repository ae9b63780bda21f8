"""The command base every drain command uses: ``manage.py drain NAME`` runs any registered drain
(drains/management/commands/drain.py), and a drain's own command (``Drain.command``, e.g.
``drain_<name>``, the names cron and operators use) is a subclass that sets ``drain_name`` and
``help`` and nothing else (thin: argument parsing, one service call)."""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from drains import registry, validate
from drains.jobs import JOB_CHECKS
from drains.models import Trigger
from drains.runner.ending import DrainRunFailed
from drains.runner.run import run_drain
from drains.trigger import add_trigger_argument

MAX_ITEMS = 1_000_000
MAX_MINUTES = 7 * 24 * 60.0  # a week: no run outlives the burst week
MAX_CONCURRENCY = 64
"""Extractor calls in flight at once: threads of one process, each holding a paid call; far
below the run row's smallint column (32767), which a typo would otherwise overflow mid-run."""


class DrainCommand(validate.CheckedCommand):
    """A drain's own command: set ``drain_name`` and ``help`` in a subclass; nothing else.
    Without a ``drain_name`` the command takes the drain as its first argument."""

    drain_name = ""
    requires_system_checks = JOB_CHECKS

    def add_arguments(self, parser: CommandParser) -> None:
        if not self.drain_name:
            parser.add_argument(
                "name", type=validate.choice(registry.names, "drain"),
                help="The drain to run: one of manage.py schedule's drains.",
            )
        # From a shell it is an operator's run; cron lines and the supervisor say who they are.
        add_trigger_argument(parser, default=Trigger.MANUAL)
        parser.add_argument(
            "--max-items",
            type=validate.whole_number(1, MAX_ITEMS),
            help=f"Stop after this many items (1 to {MAX_ITEMS:,}). Default in normal mode: "
            f"{settings.DRAINS_DEFAULT_MAX_ITEMS}; a burst has no item cap unless this is given.",
        )
        parser.add_argument(
            "--max-minutes",
            type=validate.decimal_number(0.01, MAX_MINUTES, "minutes"),
            help=f"Start no item after this many minutes (0.01 to {MAX_MINUTES:g}). Default in normal "
            f"mode: {settings.DRAINS_DEFAULT_MAX_MINUTES:g}; a burst runs until its deadline unless "
            "this is given.",
        )
        parser.add_argument(
            "--concurrency",
            type=validate.whole_number(1, MAX_CONCURRENCY),
            default=1,
            help=f"Extractor calls in flight at once (threads), 1 to {MAX_CONCURRENCY}. Default 1.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = run_drain(
                self.drain_name or options["name"],
                trigger=options["trigger"],
                max_items=options["max_items"],
                max_minutes=options["max_minutes"],
                concurrency=options["concurrency"],
                progress_stream=sys.stderr,
            )
        except DrainRunFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(result.message)
