"""Django database engine for the embedded PostgreSQL: the stock backend, started on first use.

The server is started when a connection is first opened, not when settings load, so commands
that never touch the database (``--help``, ``check``) never start it. The database itself is
created on first connection if it does not exist yet.
"""

import psycopg
from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper

from config import embedded_pg


class DatabaseWrapper(PostgresDatabaseWrapper):
    def get_connection_params(self):
        params = embedded_pg.ensure_running()
        self.settings_dict["HOST"] = params["host"]
        self.settings_dict["PORT"] = params["port"]
        return super().get_connection_params()

    def get_new_connection(self, conn_params):
        try:
            return super().get_new_connection(conn_params)
        except psycopg.OperationalError as exc:
            if "does not exist" not in str(exc) or conn_params.get("dbname") in (None, "postgres"):
                raise
            self._create_database(conn_params)
            return super().get_new_connection(conn_params)

    @staticmethod
    def _create_database(conn_params) -> None:
        dbname = conn_params["dbname"]
        with psycopg.connect(
            host=conn_params["host"], port=conn_params["port"], user=conn_params.get("user") or "postgres",
            dbname="postgres", autocommit=True,
        ) as admin:
            try:
                admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it first: exactly what we wanted
