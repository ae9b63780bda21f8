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
``lock_timeout`` with retries), ``gate`` (``ensure_schema``), ``errors``. ``drains.schema_gate``
is the entry point the commands import.
"""
