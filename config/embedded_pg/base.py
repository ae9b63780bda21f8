"""Django database engine for the embedded PostgreSQL: the stock backend, started on first use.

The server is started when connection parameters are first prepared, not when settings load, so
commands that never touch the database (``--help``, ``check``) never start it. Preparing the
parameters also creates the database when it is missing, so anything that connects with them —
Django, or a lock session opened on its own psycopg connection — finds it there.
"""

from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper

from config import embedded_pg


class DatabaseWrapper(PostgresDatabaseWrapper):
    def get_connection_params(self):
        params = embedded_pg.ensure_running()
        self.settings_dict["HOST"] = params["host"]
        self.settings_dict["PORT"] = params["port"]
        conn_params = super().get_connection_params()
        embedded_pg.ensure_database(params, conn_params.get("dbname"))
        return conn_params
