"""The start-up gate every job calls: ``ensure_schema()`` checks cheaply for unapplied
migrations, and only when some are missing takes the schema lock, re-checks and migrates."""

from __future__ import annotations

import io
import logging
import pkgutil
from importlib import import_module

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from drains.schema.lock import schema_lock

log = logging.getLogger(__name__)


def _disk_migration_names() -> set[tuple[str, str]] | None:
    """(app_label, name) of every migration file on disk, without importing any migration.

    Mirrors how Django's MigrationLoader finds them. None when that is not possible cheaply
    (an unusual module layout): the caller then asks the full loader.
    """
    found: set[tuple[str, str]] = set()
    migration_modules = getattr(settings, "MIGRATION_MODULES", {})
    from django.apps import apps

    for app_config in apps.get_app_configs():
        if app_config.label in migration_modules:
            module_name = migration_modules[app_config.label]
            if module_name is None:
                continue
        else:
            module_name = f"{app_config.name}.migrations"
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and "migrations" in exc.name.split("."):
                continue  # an app without migrations
            return None
        path = getattr(module, "__path__", None)
        if path is None or (
            getattr(module, "__file__", None) is None and not isinstance(path, list)
        ):
            continue  # a migrations.py module or an empty namespace directory: unmigrated
        found.update(
            (app_config.label, name)
            for _, name, is_pkg in pkgutil.iter_modules(path)
            if not is_pkg and name[0] not in "_~"
        )
    return found


def _recorded_migration_names(connection) -> set[tuple[str, str]]:
    """Rows of django_migrations in one query; empty when the table does not exist yet."""
    from django.db import transaction
    from django.db.migrations.recorder import MigrationRecorder

    table = connection.ops.quote_name(MigrationRecorder.Migration._meta.db_table)
    sql = f"SELECT app, name FROM {table}"
    try:
        if connection.in_atomic_block:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(sql)
                return set(cursor.fetchall())
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return set(cursor.fetchall())
    except DatabaseError as exc:
        if isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
            return set()  # a fresh database: nothing is recorded
        raise


def unapplied_migrations(connection=None) -> list[tuple[str, str]]:
    """(app_label, name) of every migration the full Django loader would apply, in order."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection or connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [(migration.app_label, migration.name) for migration, backwards in plan if not backwards]


def missing_migrations(connection=None) -> set[tuple[str, str]]:
    """The cheap check: migration files on disk that django_migrations has no row for.

    One query and a directory listing; no migration module is imported and no graph is built.
    Empty means up to date (every node of Django's graph is recorded). Non-empty may include a
    squashed migration whose replaced ones are recorded; the locked path re-checks with the
    full loader before it migrates.
    """
    connection = connection or connections[DEFAULT_DB_ALIAS]
    on_disk = _disk_migration_names()
    if on_disk is None:
        return set(unapplied_migrations(connection))
    return on_disk - _recorded_migration_names(connection)


# --- the start-up gate ------------------------------------------------------------------------


def ensure_schema(*, stdout=None, using: str = DEFAULT_DB_ALIAS) -> bool:
    """The start-up gate every job calls. Returns True when this call applied migrations.

    Up to date (the common case): one query, no lock. Otherwise: take the schema lock (waiting,
    bounded, for another migrator), re-check — the one we waited for has usually done it all —
    and migrate through ``manage.py migrate``, the same locked path a deploy uses.
    Raises a SchemaGateError (a CommandError) with an operator-readable message on failure.
    """
    connection = connections[using]
    if not missing_migrations(connection):
        return False
    with schema_lock(using=using):
        if not missing_migrations(connection):
            return False
        pending = unapplied_migrations(connection)
        if not pending:
            log.info("No unapplied migrations after all (squashed migrations are recorded).")
            return False
        log.info("Applying %d migration(s) on database alias %r.", len(pending), using)
        from django.core.management import call_command

        call_command(
            "migrate",
            database=using,
            interactive=False,
            verbosity=1 if stdout is not None else 0,
            stdout=stdout if stdout is not None else io.StringIO(),
        )
    return True
