"""``manage.py quota`` (show every quota key) and ``manage.py quota set [--quota KEY] ...``: the
CLI to the quota report (drains/quota/report.py) and the policy service
(drains/quota/controls.py ``set_quota_policy``)."""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from drains.quota.controls import set_quota_policy
from drains.quota.report import quota_lines, settings_line
from drains.quota.reserve import UNSET, QuotaPolicyError, resolve_quota_key

SET_OPTIONS = ("weekly_reserve", "session_reserve", "reserve_release_hours", "autopilot")


class Command(BaseCommand):
    help = (
        "Show every quota key's windows (utilization, reset, when seen), reserves, the ceilings "
        "in force now, the autopilot and the forecast; or change a quota key's policy with "
        "'set'. Run by an operator, never by cron."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "action", nargs="?", default="show",
            help="show (the default) or set.",
        )
        parser.add_argument(
            "--quota", metavar="KEY",
            help="With set: the quota key (as 'manage.py quota' lists it); may be left out when "
            "only one is known.",
        )
        parser.add_argument(
            "--weekly-reserve", metavar="F",
            help="With set: the fraction of the weekly window kept for the account's owner, "
            "0..0.9 (e.g. 0.1), or 'default' for DRAINS_QUOTA_WEEKLY_RESERVE.",
        )
        parser.add_argument(
            "--session-reserve", metavar="F",
            help="With set: the fraction of the 5-hour window kept, 0..0.9, or 'default'.",
        )
        parser.add_argument(
            "--reserve-release-hours", metavar="H",
            help="With set: release the weekly reserve linearly over the last H hours before "
            "the weekly reset (0 = never), or 'default'.",
        )
        parser.add_argument(
            "--autopilot", metavar="on|off",
            help="With set: switch the autopilot on or off for the quota key.",
        )
        parser.add_argument(
            "--actor", help="Who makes the change, for the timeline (default: cli:<login name>)."
        )

    def handle(self, *args, action, quota, actor, **options):
        given = {name: options[name] for name in SET_OPTIONS if options[name] is not None}
        if action not in ("show", "set"):
            raise CommandError(
                f"unknown action {action!r}: use 'manage.py quota' to show or "
                "'manage.py quota set ...' to change", returncode=2)
        if action == "show":
            if given or quota is not None:
                raise CommandError(
                    "--quota and the reserve/autopilot options go with 'set': "
                    "manage.py quota set --weekly-reserve 0.1", returncode=2)
            for line in quota_lines(now=timezone.now()):
                self.stdout.write(line)
            self.stdout.write(settings_line())
            return
        changes = {
            name: (None if name != "autopilot" and value.strip().lower() == "default" else value)
            for name, value in given.items()
        }
        try:
            key = resolve_quota_key(quota)
            policy = set_quota_policy(
                quota_key=key, actor=actor or f"cli:{getpass.getuser()}",
                **{name: changes.get(name, UNSET) for name in SET_OPTIONS},
            )
        except QuotaPolicyError as exc:
            raise CommandError(str(exc), returncode=2) from None
        lines = quota_lines(now=timezone.now())
        start = lines.index(f"quota {policy.quota_key}")
        for line in lines[start:]:
            if line.startswith("quota ") and line != f"quota {policy.quota_key}":
                break
            self.stdout.write(line)
