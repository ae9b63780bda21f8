"""A PostgreSQL server of the test's own that listens on 127.0.0.1 over TCP.

The embedded server listens on a Unix socket only, and a socket has no TCP to cut or keep
alive; the many-host tests need real TCP connections. This server is built from the same
binaries (the pgserver package), so no system PostgreSQL is needed. As root, postgres runs as
the ``pgserver`` user, exactly as the embedded server does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def tcp_postgres() -> Iterator[str]:
    """Start a throw-away server; yield its URL without a database name; stop and remove it."""
    with warnings.catch_warnings():  # pgserver's platformdirs warns without XDG_RUNTIME_DIR
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from pgserver import _commands
        from pgserver.utils import ensure_user_exists

    user = None
    base = Path(tempfile.mkdtemp(prefix="drains-tcp-pg-"))
    base.chmod(0o755)
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:  # postgres refuses to run as root
        user = "pgserver"
        ensure_user_exists(user)
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    _commands.initdb(["--auth=trust", "--username=postgres", "--encoding=UTF8"], pgdata=data,
                     user=user, timeout=120)
    _commands.pg_ctl(
        ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {base}", "-l", str(base / "server.log"), "start"],
        pgdata=data, user=user, timeout=120,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        _commands.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=data, user=user, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return f"{server_url}/{name}"
