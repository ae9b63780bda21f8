"""The command base every drain command uses: ``manage.py drain_<name>`` is a subclass that
sets ``drain_name`` and ``help`` and nothing else (thin: argument parsing, one service call)."""

from __future__ import annotations

import argparse
import sys

from django.core.management.base import BaseCommand, CommandError

from drains.models import Trigger
from drains.runner.run import DrainRunFailed, run_drain
from drains.trigger import add_trigger_argument


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value} must be more than 0")
    return number


class DrainCommand(BaseCommand):
    """``manage.py drain_<name>``: set ``drain_name`` and ``help`` in a subclass; nothing else."""

    drain_name = ""

    def add_arguments(self, parser):
        # From a shell it is an operator's run; cron lines and the supervisor say who they are.
        add_trigger_argument(parser, default=Trigger.MANUAL)
        parser.add_argument(
            "--max-items",
            type=_positive_int,
            help="Stop after this many items. Default in normal mode: DRAINS_DEFAULT_MAX_ITEMS; "
            "a burst has no item cap unless this is given.",
        )
        parser.add_argument(
            "--max-minutes",
            type=_positive_float,
            help="Start no item after this many minutes. Default in normal mode: "
            "DRAINS_DEFAULT_MAX_MINUTES; a burst runs until its deadline unless this is given.",
        )
        parser.add_argument(
            "--concurrency",
            type=_positive_int,
            default=1,
            help="Extractor calls in flight at once (threads). Default 1.",
        )

    def handle(self, *args, **options):
        try:
            result = run_drain(
                self.drain_name,
                trigger=options["trigger"],
                max_items=options["max_items"],
                max_minutes=options["max_minutes"],
                concurrency=options["concurrency"],
                progress_stream=sys.stderr,
            )
        except DrainRunFailed as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(result.message)
