"""The ``--trigger`` option every job command takes, written once: who started a run, as the
run row records it (cron, the supervisor, or an operator)."""

from __future__ import annotations

from drains.models import Trigger

OPTION = "--trigger"


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


def trigger_args(trigger: Trigger) -> list[str]:
    """The command-line words that start a job with ``trigger``."""
    return [OPTION, str(trigger)]
