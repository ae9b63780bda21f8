"""A PostgreSQL server of the test's own, from Debian's server binaries, for the fault tests.

The fault tests restart, shut down and starve the server under a running drain, so it must be
nobody else's: a data folder, a port and a socket folder of its own, run with ``pg_ctl``
(``make test`` installs Debian's ``postgresql`` package when /usr/lib/postgresql/*/bin is
missing). As root, postgres runs as the ``pgserver`` user (as the embedded server does).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

USER = "pgserver"


def server_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise AssertionError(
            "The fault tests need Debian's PostgreSQL server binaries (/usr/lib/postgresql/*/bin)"
            ": run `make test-packages` (apt-get install postgresql)."
        )
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    def __init__(self):
        self.bin = server_bin()
        self.base = Path(tempfile.mkdtemp(prefix="drains-fault-pg-"))
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()
        self.root = os.geteuid() == 0
        if self.root:
            try:
                pwd.getpwnam(USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True)
            entry = pwd.getpwnam(USER)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)

    def owned(self, path: Path) -> None:
        """Give ``path`` to the server's user (a tablespace folder, say)."""
        if self.root:
            entry = pwd.getpwnam(USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(self.bin / tool), *args]
        if self.root:
            argv = ["runuser", "-u", USER, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "--auth=trust", "--username=postgres",
                  "--encoding=UTF8", "--no-sync")

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._run("pg_ctl", "-D", str(self.data), "-w", *args, check=check)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.log), "-o",
                    f"-h 127.0.0.1 -p {self.port} -k {self.base} -c fsync=off", "start")

    def restart(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-l", str(self.log), "restart")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "stop")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True)

    def create_database(self, name: str, *, tablespace: str | None = None) -> str:
        with self.admin() as conn:
            sql = psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name))
            if tablespace:
                sql += psycopg.sql.SQL(" TABLESPACE {}").format(psycopg.sql.Identifier(tablespace))
            conn.execute(sql)
        return self.url(name)

    def close(self) -> None:
        self.pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
