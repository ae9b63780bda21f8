"""``manage.py ensure_schema``: the start-up gate as a command of its own.

A thin wrapper of ``drains.schema.ensure_schema()`` for deploy scripts, health checks,
the tests and the benchmark; it must never migrate any other way.
"""

from __future__ import annotations

from drains.operator_commands import add_database_argument
from drains.schema import ensure_schema
from drains.validate import CheckedCommand


class Command(CheckedCommand):
    help = (
        "Bring the schema up to date if, and only if, a migration is unapplied: a one-query "
        "check without the lock, then the locked `migrate` path. Cron does not run this "
        "command: every job calls the same ensure_schema() at start-up. Use it in deploy "
        "scripts or health checks. Exit status 1 (with the reason) if the gate fails."
    )

    def add_arguments(self, parser):
        add_database_argument(parser, what="check and migrate")

    def handle(self, *args, database, verbosity, **options):
        applied = ensure_schema(using=database, stdout=self.stdout if verbosity >= 2 else None)
        if verbosity >= 1:
            self.stdout.write("migrated" if applied else "up to date")
