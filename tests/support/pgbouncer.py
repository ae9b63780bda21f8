"""PgBouncer (Debian's package) in front of the test server, on a free port of 127.0.0.1.

``pool_mode`` is PgBouncer's: ``session`` (supported: a client keeps one server session, so
session-level advisory locks mean what they say) or ``transaction`` (refused by the jobs).
PgBouncer refuses to run as root; as root it runs as the ``pgserver`` user, as the embedded
server does. ``ignore_startup_parameters = options``: PgBouncer refuses the keepalive settings
every connection sends as ``options`` (docs/deploy.md), and keeps its own keepalives instead.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from django.db import connection

from tests.support.processes import stop
from tests.support.web import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@dataclass(frozen=True)
class Bouncer:
    url: str  # postgresql://USER@127.0.0.1:PORT — append /DBNAME
    log: Path

    def logins(self, dbname: str) -> int:
        """How many client logins to ``dbname`` PgBouncer has logged."""
        return self.log.read_text().count(f"login attempt: db={dbname} ")


@contextmanager
def pgbouncer(pool_mode: str = "session") -> Iterator[Bouncer]:
    if not os.access(PGBOUNCER, os.X_OK):
        raise AssertionError(f"{PGBOUNCER} is missing: `make test` installs Debian's pgbouncer.")
    params = connection.get_connection_params()
    host = params.get("host") or "127.0.0.1"
    port_in = params.get("port") or 5432
    user = params.get("user") or "postgres"
    password = params.get("password") or ""
    base = Path(tempfile.mkdtemp(prefix="drains-pgbouncer-"))
    base.chmod(0o777)
    port = free_port()
    backend = f"host={host} port={port_in} user={user}" + (f" password={password}" if password else "")
    (base / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = {backend}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\n"
        f"pool_mode = {pool_mode}\n"
        "max_client_conn = 1000\ndefault_pool_size = 200\n"
        "ignore_startup_parameters = options\n"
        "tcp_keepalive = 1\ntcp_keepidle = 20\ntcp_keepintvl = 10\ntcp_keepcnt = 4\n"
        f"logfile = {base}/pgbouncer.log\npidfile = {base}/pgbouncer.pid\n"
    )
    run_as = {}
    if os.geteuid() == 0:
        entry = pwd.getpwnam("pgserver")
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid}
    process = subprocess.Popen([PGBOUNCER, str(base / "pgbouncer.ini")], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, **run_as)
    url = f"postgresql://{quote(user)}{':' + quote(password) if password else ''}@127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(f"{url}/postgres", connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (base / "pgbouncer.log").read_text() if (base / "pgbouncer.log").exists() else ""
                    raise AssertionError(f"pgbouncer did not start:\n{process.communicate()[0]}\n{log}") from None
                time.sleep(0.1)
        yield Bouncer(url, base / "pgbouncer.log")
    finally:
        stop(process)
        shutil.rmtree(base, ignore_errors=True)
