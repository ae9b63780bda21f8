"""The schema gate: one migrator at a time, behind a session-level PostgreSQL advisory lock.

Owns the lock every migration in this project runs under, the start-up gate every job calls
(``ensure_schema()``), the DDL retry policy and the description of who holds the lock.
``manage.py migrate`` (drains/management/commands/migrate.py) and ``ensure_schema()`` are the
only two entry points, and both end in the same locked path.

The lock (documented in docs/architecture.md, "Schema gate"):
``pg_try_advisory_lock(SCHEMA_LOCK_NAMESPACE, <the database's oid as int4>)``, taken on a
dedicated connection this process owns and nothing else uses, so that a crash of the process
(even SIGKILL) ends the session and releases the lock. In ``pg_locks`` it shows as
``locktype='advisory', classid=1296648018, objid=<database oid>, objsubid=2``.

This module must never block in ``pg_advisory_lock`` (a blocked waiter can deadlock with
``CREATE INDEX CONCURRENTLY``), never run DDL without holding the lock (except under the
test-only ``DRAINS_SCHEMA_GATE_UNSAFE_NO_LOCK`` switch), and never wait without a bound.

Modules: ``lock`` (taking and checking the lock), ``status`` (who holds it), ``ddl`` (DDL under
``lock_timeout`` with retries), ``gate`` (``ensure_schema``), ``errors``, ``keys`` (the key and the sessions' names). This
package is the entry point the commands import; its names are below.
"""

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
