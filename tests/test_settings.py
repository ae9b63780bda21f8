import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import NotPostgres, parse_database_url
from tests.support.db import child_env, manage


@pytest.mark.parametrize("url", ["sqlite:///var/db.sqlite3", "mysql://root@localhost/x", "db.sqlite3"])
def test_non_postgres_url_is_refused(url):
    with pytest.raises(NotPostgres, match="PostgreSQL only: the schema gate"):
        parse_database_url(url)


def test_sqlite_database_url_is_refused_at_start_up_with_a_clear_message():
    env = child_env()
    env["DATABASE_URL"] = "sqlite:///tmp/drains.sqlite3"
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "runs on PostgreSQL only" in result.stderr
    assert "advisory locks" in result.stderr
    # a clear message, not a traceback into Django internals
    assert "Traceback" not in result.stderr


def test_postgres_url_parses_socket_host_and_options():
    db = parse_database_url("postgresql://u:p%40ss@/drains?host=/run/pg&sslmode=disable")
    assert db["HOST"] == "/run/pg"
    assert db["PASSWORD"] == "p@ss"
    assert db["NAME"] == "drains"
    assert db["OPTIONS"] == {"sslmode": "disable"}


def test_url_without_database_name_is_refused():
    with pytest.raises(ImproperlyConfigured, match="names no database"):
        parse_database_url("postgres://localhost:5432")
