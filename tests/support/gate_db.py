"""Helpers for the schema-gate tests: throw-away databases, child migrators, schema checks."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from psycopg import sql

from tests.support.db import admin_connect, child_env, popen_manage, with_settings

GATE_SETTINGS = "tests.support.gate_settings"
_counter = itertools.count()


def fresh_database_name(tag: str = "gate") -> str:
    return f"{tag}_{os.getpid()}_{next(_counter)}_{time.monotonic_ns() % 10**6}"


@contextmanager
def fresh_database(tag: str = "gate"):
    """CREATE an empty database on the test server; DROP it (forcibly) afterwards."""
    name = fresh_database_name(tag)
    with admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with admin_connect() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def gate_env(database: str, *, gate_app: bool = False, **settings: object) -> dict[str, str]:
    """Child environment for ``database`` with ``settings`` on the project's; with ``gate_app``
    the test-only app is installed."""
    env = child_env(database)
    if gate_app:
        env["DJANGO_SETTINGS_MODULE"] = GATE_SETTINGS
    return with_settings(env, **settings) if settings else env


def wait_until(condition: Callable[[], object], *, timeout: float, what: str, poll: float = 0.02):
    """Poll real external state (another process, the server) until ``condition()`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


class Child:
    """A ``manage.py`` child whose stdout/stderr are collected line by line as they arrive."""

    def __init__(self, *args: str, env: dict[str, str]):
        self.args = args
        self.proc = popen_manage(*args, env=env)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if not stream.closed and not any(t.is_alive() for t in self._threads):
                stream.close()
        return code

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(timeout=30)


def session_pid(dbname: str, application_name_like: str, *, waiting_on_latch: bool = False):
    """The backend pid of a session in ``dbname`` whose application_name matches, or None."""
    from tests.support.gate_app import LATCH_KEY, LATCH_NAMESPACE

    query = (
        "SELECT a.pid FROM pg_stat_activity a WHERE a.datname = %s AND a.application_name LIKE %s"
    )
    params: list = [dbname, application_name_like]
    if waiting_on_latch:
        query += (
            " AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory'"
            " AND NOT l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2)"
        )
        params += [LATCH_NAMESPACE, LATCH_KEY]
    with admin_connect() as admin:
        row = admin.execute(query, params).fetchone()
    return row[0] if row else None


def expected_schema() -> tuple[set, set, set]:
    """From the test process's own app registry: migrations, content types, permissions."""
    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader

    migrations = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    content_types = set()
    permissions = set()
    for model in apps.get_models():
        opts = model._meta
        content_types.add((opts.app_label, opts.model_name))
        for action in opts.default_permissions:
            permissions.add((opts.app_label, opts.model_name, f"{action}_{opts.model_name}"))
        for codename, _ in opts.permissions:
            permissions.add((opts.app_label, opts.model_name, codename))
    return migrations, content_types, permissions


GATE_APP_MIGRATIONS = frozenset(
    {
        ("gate_app", "0001_initial"),
        ("gate_app", "0002_wait_for_latch"),
        ("gate_app", "0003_widget_colour"),
    }
)


def schema_problems(dbname: str, *, gate_app: bool = False) -> list[str]:
    """Everything that is missing or duplicated in ``dbname`` compared with a complete schema."""
    migrations, content_types, permissions = expected_schema()
    if gate_app:
        migrations |= GATE_APP_MIGRATIONS
        content_types.add(("gate_app", "widget"))
        permissions |= {
            ("gate_app", "widget", f"{a}_widget") for a in ("add", "change", "delete", "view")
        }
    problems: list[str] = []
    with admin_connect(dbname) as conn:
        recorded = conn.execute("SELECT app, name FROM django_migrations").fetchall()
        ct_rows = conn.execute("SELECT app_label, model FROM django_content_type").fetchall()
        perm_rows = conn.execute(
            "SELECT ct.app_label, ct.model, p.codename FROM auth_permission p"
            " JOIN django_content_type ct ON ct.id = p.content_type_id"
        ).fetchall()
    for label, rows, expected in (
        ("migration", recorded, migrations),
        ("content type", ct_rows, content_types),
        ("permission", perm_rows, permissions),
    ):
        seen = set(rows)
        if missing := expected - seen:
            problems.append(f"missing {label}s: {sorted(missing)[:5]} ({len(missing)})")
        if len(rows) != len(seen):
            problems.append(f"duplicated {label}s: {len(rows) - len(seen)}")
        if label != "migration" and (extra := seen - expected):
            problems.append(f"unexpected {label}s: {sorted(extra)[:5]}")
    return problems
