"""``manage.py migrate`` behind the schema gate: Django's migrate, run while holding the lock.

This override only wraps Django's command: it takes the schema lock before Django builds its
plan, arms the DDL session, checks before every migration that the lock is still held, and
retries a migration whose DDL hit ``lock_timeout``. The rules live in drains/schema/;
this command must never migrate outside ``schema.schema_lock()``.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db.migrations.exceptions import AmbiguityError
from django.db.migrations.loader import MigrationLoader

from drains import schema, validate


def check_target(app_label: str | None, migration_name: str | None, *, prune: bool) -> None:
    """Refuse an app or migration that does not exist before the lock is taken (Django would
    say so too, but as a failed migration, exit 1, after waiting for the lock)."""
    if prune and not app_label:
        raise validate.BadInput("--prune: name an app (manage.py migrate APP_LABEL --prune).")
    if not app_label:
        return
    loader = MigrationLoader(None, ignore_no_migrations=True)
    try:
        apps.get_app_config(app_label)
    except LookupError:
        raise validate.BadInput(
            f"app_label: there is no installed app {validate.shown(app_label)}; apps with "
            f"migrations: {', '.join(sorted(loader.migrated_apps))}."
        ) from None
    if app_label not in loader.migrated_apps:
        raise validate.BadInput(f"app_label: the app {app_label!r} has no migrations.")
    if migration_name is None or migration_name == "zero":
        return
    try:
        loader.get_migration_by_prefix(app_label, migration_name)
    except AmbiguityError:
        raise validate.BadInput(
            f"migration_name: {validate.shown(migration_name)} matches more than one migration "
            f"of {app_label}; give more of its name (manage.py showmigrations {app_label})."
        ) from None
    except KeyError:
        raise validate.BadInput(
            f"migration_name: {app_label} has no migration {validate.shown(migration_name)}; "
            f"manage.py showmigrations {app_label} lists them (or zero)."
        ) from None


class Command(validate.CheckedCommand, DjangoMigrateCommand):
    help = (
        "Updates the database schema behind the schema gate: waits (bounded) for the "
        "session-level advisory lock, then plans, applies and runs post_migrate while holding "
        "it, with DDL under lock_timeout and bounded retries. Run at deploy and by `make run`; "
        "cron never runs it directly: every job calls the same gate at start-up through "
        "ensure_schema()."
    )

    def handle(self, *args, **options):
        check_target(options["app_label"], options["migration_name"], prune=options["prune"])
        database = options["database"]
        self._schema_lock = None
        self._current_migration = None
        self._line_open = False
        django_handle = super().handle
        with schema.schema_lock(using=database) as lock:
            self._schema_lock = lock
            self._database = database
            with schema.ddl_session(using=database):
                try:
                    return schema.run_with_ddl_retries(
                        lambda: django_handle(*args, **options),
                        using=database,
                        lock=lock,
                        current=lambda: self._current_migration,
                        on_retry=self._report_retry,
                    )
                except schema.MigrationBlocked:
                    self._close_line(" LOCK TIMEOUT")
                    raise

    def migration_progress_callback(self, action, migration=None, fake=False):
        if action in ("apply_start", "unapply_start"):
            self._current_migration = migration
            schema.before_migration(using=self._database, lock=self._schema_lock)
            self._line_open = self.verbosity >= 1
        elif action in ("apply_success", "unapply_success"):
            self._line_open = False
        super().migration_progress_callback(action, migration, fake)

    def _close_line(self, ending: str) -> None:
        if self._line_open:
            # Django printed "  Applying x..." without a newline; close that line.
            self.stdout.write(self.style.WARNING(ending))
            self._line_open = False

    def _report_retry(self, message: str) -> None:
        self._close_line(" LOCK TIMEOUT")
        if self.verbosity >= 1:
            self.stdout.write(self.style.WARNING(f"  {message}"))
