"""The ``--trigger`` option every job command takes, written once: who started a run, as the
run row records it (cron, the supervisor, or an operator)."""

from __future__ import annotations

from drains.models import Trigger

OPTION = "--trigger"


def add_trigger_argument(parser) -> None:
    parser.add_argument(
        OPTION,
        choices=Trigger.values,
        default=Trigger.CRON,
        help="Who started this run, as recorded on it: cron (default), supervisor, or manual "
        "(an operator).",
    )


def trigger_args(trigger: Trigger) -> list[str]:
    """The command-line words that start a job with ``trigger``."""
    return [OPTION, str(trigger)]
