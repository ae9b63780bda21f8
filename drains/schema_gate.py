"""The schema gate (placeholder until the locked gate lands): ``ensure_schema()``.

Every job calls ``ensure_schema()`` at start-up. This placeholder only migrates when something
is unapplied; the locked implementation replaces it with the advisory-locked gate.
"""

from __future__ import annotations


def unapplied_migrations(connection=None) -> list:
    from django.db import connection as default_connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection or default_connection)
    return executor.migration_plan(executor.loader.graph.leaf_nodes())


def ensure_schema(*, stdout=None) -> bool:
    """Bring the schema up to date if needed. Returns True when migrations were applied."""
    if not unapplied_migrations():
        return False
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return True
