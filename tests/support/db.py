"""Helpers for tests that start real processes against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url(name: str | None = None) -> str:
    """A DATABASE_URL for ``name`` (default: the current test database) on the test server."""
    params = connection.get_connection_params()  # starts the embedded server if needed
    s = connection.settings_dict
    name = name or s["NAME"]
    user = quote(params.get("user") or s["USER"] or "postgres")
    password = params.get("password") or s["PASSWORD"]
    auth = f"{user}:{quote(password)}" if password else user
    host = params.get("host") or s["HOST"] or ""
    port = params.get("port") or s["PORT"] or ""
    if host.startswith("/"):
        query = f"?host={quote(host, safe='/')}" + (f"&port={port}" if port else "")
        return f"postgresql://{auth}@/{name}{query}"
    return f"postgresql://{auth}@{host}{':' + str(port) if port else ''}/{name}"


def admin_connect(dbname: str = "postgres") -> psycopg.Connection:
    """An autocommit connection to another database on the test server (CREATE/DROP DATABASE)."""
    params = dict(connection.get_connection_params())
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params.pop("server_side_binding", None)
    params["dbname"] = dbname
    return psycopg.connect(autocommit=True, **params)


def child_env(database: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a child ``manage.py`` pointed at ``database`` (default: the test DB).

    A child commits: pointed at the test database from inside a test's transaction (a plain
    ``django_db`` test), its writes would survive the roll-back and leak into later tests. Such
    a test must be ``django_db(transaction=True)``, whose database is flushed when it ends (after
    every process it started has been killed: tests/support/processes.py).
    """
    if database is None and connection.in_atomic_block:
        raise RuntimeError(
            "a child process would commit to the test database inside this test's transaction; "
            "mark the test django_db(transaction=True)"
        )
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url(database)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def with_settings(env: dict[str, str], **values: object) -> dict[str, str]:
    """``env`` for a child that runs with the settings ``values`` on top of the project's
    (tests/support/settings.py); a test settings module already chosen (the gate's) keeps them
    too, as it star-imports that one."""
    merged = {**json.loads(env.get("TEST_SETTINGS", "{}")), **values}
    env = {**env, "TEST_SETTINGS": json.dumps(merged)}
    if env.get("DJANGO_SETTINGS_MODULE", "config.settings") == "config.settings":
        env["DJANGO_SETTINGS_MODULE"] = "tests.support.settings"
    return env


def manage(*args: str, env: dict | None = None, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``manage.py ARGS`` in a child process and return the completed process."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def popen_manage(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
