"""Every command of ours explains itself: a `help` text and a `help=` on every argument."""

from __future__ import annotations

import argparse

import pytest
from django.core.management import get_commands, load_command_class

OUR_APPS = {"drains", "halacha", "operations"}
# Arguments every Django command inherits; their help comes from Django.
INHERITED = {
    "help", "version", "verbosity", "settings", "pythonpath", "traceback", "no_color",
    "force_color", "skip_checks",
}  # fmt: skip

OUR_COMMANDS = sorted(name for name, app in get_commands().items() if app in OUR_APPS)


def test_the_project_has_its_commands():
    for expected in ["migrate", "burst", "drain_halacha", "drain_metadata", "supervise_drains",
                     "import_decisions", "fetch_decisions", "send_digest", "schedule",
                     "run_scheduler", "drain_enabled", "mint_token", "list_tokens",
                     "revoke_token", "migrate_lock_status"]:
        assert expected in OUR_COMMANDS


@pytest.mark.parametrize("name", OUR_COMMANDS)
def test_help__the_command_and_each_of_its_arguments_are_explained(name):
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    text = parser.format_help()
    assert len(command.help.strip()) > 20, f"{name} has no help text"
    assert command.help.split()[0] in text
    missing = [
        action.dest
        for action in parser._actions
        if action.dest not in INHERITED
        and action.help in (None, "")
        and not isinstance(action, argparse._HelpAction)
    ]
    assert not missing, f"{name}: arguments without help: {missing}"
