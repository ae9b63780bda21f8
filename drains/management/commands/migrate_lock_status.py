"""``manage.py migrate_lock_status``: who holds the schema lock, and who waits for it.

Read-only: it reads pg_locks and pg_stat_activity through drains/schema/ and never
takes, releases or breaks the lock.
"""

from __future__ import annotations

from django.db import connections

from drains import schema
from drains.operator_commands import add_database_argument
from drains.validate import CheckedCommand


class Command(CheckedCommand):
    help = (
        "Show the schema lock of a database: its key, the session holding it (pid, "
        "application_name, state, query, how long) with the migration it is running, and the "
        "sessions waiting for it. Not scheduled by cron: run it by hand when a job reports "
        "that it is waiting for the schema lock. Exit status 0 whether or not it is held."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        add_database_argument(parser, what="inspect")

    def handle(self, *args, database, **options):
        with connections[database].cursor() as cursor:
            status = schema.schema_lock_status(cursor)
        key = status.key
        write = self.stdout.write
        write(
            f"Schema lock of database {status.database!r}: "
            f"pg_try_advisory_lock({schema.SCHEMA_LOCK_NAMESPACE}, "
            f"{schema.database_key(status.database_oid)}) — in pg_locks: {key}"
        )
        if status.holder is None:
            write("Holder: none — the lock is free.")
        else:
            write(f"Holder: {status.holder.describe(held_for=status.held_for)}")
            for ddl in status.holder_migrating:
                write(f"  migrating in: {ddl.describe()}")
        if not status.waiters:
            write("Waiters: none.")
        else:
            write(f"Waiters ({len(status.waiters)}):")
            for waiter in status.polling:
                write(f"  {waiter.describe()} (polling pg_try_advisory_lock)")
            for waiter in status.blocked:
                write(f"  {waiter.describe()} (blocked in pg_advisory_lock)")
