"""The schema gate's entry point (see drains/schema/__init__.py for what it owns and must never
do). The commands, the runner and the jobs import these names from here."""

from drains.schema.ddl import ddl_backoff, ddl_session, is_lock_timeout, run_with_ddl_retries
from drains.schema.errors import (
    MigrationBlocked,
    SchemaGateError,
    SchemaLockLost,
    SchemaLockTimeout,
)
from drains.schema.gate import ensure_schema, missing_migrations, unapplied_migrations
from drains.schema.lock import (
    DDL_APPLICATION_PREFIX,
    LOCK_APPLICATION_PREFIX,
    SCHEMA_LOCK_NAMESPACE,
    SchemaLock,
    acquire_schema_lock,
    application_name,
    before_migration,
    database_key,
    schema_lock,
    schema_lock_key,
    unsafe_no_lock,
)
from drains.schema.status import SchemaLockStatus, describe_holder, schema_lock_status

__all__ = [
    "DDL_APPLICATION_PREFIX",
    "LOCK_APPLICATION_PREFIX",
    "SCHEMA_LOCK_NAMESPACE",
    "MigrationBlocked",
    "SchemaGateError",
    "SchemaLock",
    "SchemaLockLost",
    "SchemaLockStatus",
    "SchemaLockTimeout",
    "acquire_schema_lock",
    "application_name",
    "before_migration",
    "database_key",
    "ddl_backoff",
    "ddl_session",
    "describe_holder",
    "ensure_schema",
    "is_lock_timeout",
    "missing_migrations",
    "run_with_ddl_retries",
    "schema_lock",
    "schema_lock_key",
    "schema_lock_status",
    "unapplied_migrations",
    "unsafe_no_lock",
]
