"""The options every job command takes, written once: ``--trigger``, who started a run, as the
run row records it (cron, the supervisor, or an operator), and ``--scheduled-for``, the cron fire
time a start serves (``run_scheduler`` passes it)."""

from __future__ import annotations

from datetime import datetime

from drains import validate
from drains.models import Trigger

OPTION = "--trigger"
SCHEDULED_FOR = "--scheduled-for"


def add_trigger_argument(parser, *, default: Trigger = Trigger.CRON, choices=None) -> None:
    """Every command a person types defaults to manual (the drain commands pass it); cron lines
    pass ``--trigger cron`` (settings.CRONJOBS), which for a job that is not a drain claims the
    cron slot (drains/jobs.py); a manual run is never refused."""
    help_text = f"Who started this run, as recorded on it (default: {default})."
    if default == Trigger.MANUAL:
        help_text += (
            " Cron lines pass cron, which claims the cron slot, so that with the crontab on "
            "several hosts one of them does the work; a manual run is never refused."
        )
    # Plain strings, so that a refusal lists 'cron', 'manual', not Trigger.CRON, Trigger.MANUAL.
    words = [str(choice) for choice in (choices or Trigger.values)]
    parser.add_argument(OPTION, choices=words, default=str(default), help=help_text)
    parser.add_argument(
        SCHEDULED_FOR, type=validate.aware_datetime, metavar="TIME",
        help="The cron fire time this start serves, ISO 8601 with a UTC offset "
        "(run_scheduler passes it). Unset, a cron start serves the job's latest fire time at or "
        "before now.",
    )


def trigger_args(trigger: Trigger) -> list[str]:
    """The command-line words that start a job with ``trigger``."""
    return [OPTION, str(trigger)]


def scheduled_for_args(fire: datetime) -> list[str]:
    """The command-line words that start a job for the cron fire time ``fire``."""
    return [f"{SCHEDULED_FOR}={fire.isoformat()}"]
