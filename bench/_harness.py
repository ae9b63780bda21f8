"""What every bench shares: the server a bench runs on, statements as the server's admin, and a
scratch database of its own that is dropped afterwards.

A bench uses DATABASE_URL's server when it is set, else the embedded PostgreSQL (the user's
default); either way it creates and drops its own databases and never touches the project's.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config.env import env_str  # noqa: E402


def server_url(database: str) -> str:
    """A DATABASE_URL for ``database`` on the bench's server."""
    base = env_str("DATABASE_URL")
    if base is None:
        from config import embedded_pg

        return embedded_pg.url(database)
    return urlunsplit(urlsplit(base)._replace(path=f"/{database}"))


def admin_execute(statement) -> None:
    """Run ``statement`` (text or a psycopg ``sql`` object) on the server's ``postgres`` database."""
    import psycopg

    with psycopg.connect(server_url("postgres"), autocommit=True) as conn:
        conn.execute(statement)


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A fresh database ``<prefix>_<pid>`` for the bench's lifetime, dropped afterwards."""
    from psycopg import sql

    name = f"{prefix}_{os.getpid()}"
    admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        admin_execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
