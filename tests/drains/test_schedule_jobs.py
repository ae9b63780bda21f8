"""The commands of the schedule: each names when cron runs it, every argument has help."""

from __future__ import annotations

import pytest
from django.core.management import get_commands, load_command_class

from drains import schedule

MINE = ["schedule", "run_scheduler", "crontab", "fetch_decisions", "send_digest", "drain_metadata"]


@pytest.mark.parametrize("name", MINE)
def test_help_says_when_cron_runs_it_and_documents_every_argument(name):
    command = load_command_class(get_commands()[name], name)
    assert "cron" in command.help.lower()
    parser = command.create_parser("manage.py", name)
    for action in parser._actions:
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
    assert "usage: manage.py " + name in parser.format_help()


def test_every_scheduled_job_is_an_installed_command_that_needs_no_arguments():
    """What cron and run_scheduler start must exist and run with the entry's own arguments."""
    commands = get_commands()
    for job in schedule.scheduled_jobs():
        assert job.name in commands, f"CRONJOBS runs {job.name}, which no app provides"
        command = load_command_class(commands[job.name], job.name)
        command.create_parser("manage.py", job.name).parse_args(list(job.args))
