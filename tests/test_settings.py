from pathlib import Path

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


def test_dead_peer_options_bound_both_ends_and_keep_what_the_url_says():
    from config.env import dead_peer_options

    opts = dead_peer_options(60, {"sslmode": "require"})
    idle, interval, count = (int(opts[k]) for k in ("keepalives_idle", "keepalives_interval", "keepalives_count"))
    assert opts["keepalives"] == "1" and opts["sslmode"] == "require"
    assert idle + interval * count <= 60 and (idle, interval, count) == (20, 10, 4)
    assert opts["tcp_user_timeout"] == "60000"
    assert opts["options"] == (
        "-c tcp_keepalives_idle=20 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=4 "
        "-c tcp_user_timeout=60000 -c client_connection_check_interval=10000"
    )
    # what DATABASE_URL sets wins; its own server options are kept after ours
    mine = dead_peer_options(60, {"keepalives_idle": "5", "options": "-c search_path=x"})
    assert mine["keepalives_idle"] == "5" and mine["options"].endswith(" -c search_path=x")
    assert dead_peer_options(0, {"a": "b"}) == {"a": "b"}


def test_every_connection_carries_the_keepalives(settings):
    from django.db import connection

    params = connection.get_connection_params()
    assert params["keepalives_idle"] == str(settings.DRAINS_DB_DEAD_PEER_SECONDS // 3)
    assert "tcp_keepalives_idle" in params["options"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DRAINS_QUOTA_WEEKLY_RESERVE", "0.95", "DRAINS_QUOTA_WEEKLY_RESERVE=0.95 is above the maximum of 0.9"),
        ("DRAINS_QUOTA_SESSION_RESERVE", "-0.1", "DRAINS_QUOTA_SESSION_RESERVE=-0.1 is below the minimum"),
        ("DRAINS_QUOTA_RESERVE_RELEASE_HOURS", "200", "longer than the week (168 hours)"),
        ("DRAINS_QUOTA_WEEKLY_RESERVE", "lots", "DRAINS_QUOTA_WEEKLY_RESERVE='lots' is not a number"),
    ],
)
def test_quota_reserve_settings_out_of_range_are_one_clear_line(name, value, message):
    env = child_env()
    env[name] = value
    result = manage("check", env=env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
def test_every_connection_has_a_connect_timeout_and_each_lock_session_too(settings):
    from django.db import connection

    from drains.locks import open_lock_session

    params = connection.get_connection_params()
    assert params["connect_timeout"] == str(settings.DRAINS_DB_CONNECT_TIMEOUT_SECONDS)
    with open_lock_session(application_name="timeout-check") as lock_session:
        assert lock_session.info.get_parameters()["connect_timeout"] == params["connect_timeout"]


def _printed_settings(*names: str, **env: str) -> list[str]:
    code = "from django.conf import settings; print(" + ", ".join(
        f"settings.{name}" for name in names) + ")"
    done = manage("shell", "-c", code, env=child_env(**env))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].split()


def test_the_hung_kill_grace_is_at_least_the_cli_timeout_unless_set_lower():
    assert _printed_settings("DRAINS_HUNG_KILL_GRACE_SECONDS", HALACHA_CLI_TIMEOUT_SECONDS="400",
                             DRAINS_HUNG_KILL_GRACE_SECONDS="") == ["405.0"]
    assert _printed_settings("DRAINS_HUNG_KILL_GRACE_SECONDS", HALACHA_CLI_TIMEOUT_SECONDS="400",
                             DRAINS_HUNG_KILL_GRACE_SECONDS="3") == ["3.0"]


@pytest.mark.django_db(transaction=True)
def test_the_runner_sessions_get_statement_and_lock_timeouts(settings):
    from django.db import connection

    from drains.dbretry import ensure_session_timeouts, reset_connection

    settings.DRAINS_DB_STATEMENT_TIMEOUT_MS = 1234
    settings.DRAINS_DB_LOCK_TIMEOUT_MS = 567
    reset_connection()
    ensure_session_timeouts()
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        statement = cursor.fetchone()[0]
        cursor.execute("SHOW lock_timeout")
        lock = cursor.fetchone()[0]
    reset_connection()  # the next test's session starts clean
    assert (statement, lock) == ("1234ms", "567ms")


@pytest.mark.parametrize(("tz", "zone"), [
    ("Asia/Tokyo", "Asia/Tokyo"),
    (":America/New_York", "America/New_York"),
    ("/usr/share/zoneinfo/Europe/Paris", "Europe/Paris"),  # a path, as glibc takes it
    ("no such zone", "UTC"),  # glibc reads a TZ it cannot parse as UTC
])
def test_the_hosts_zone_is_read_as_glibc_and_cron_read_it(monkeypatch, tz, zone):
    from config.env import host_zone

    monkeypatch.setenv("TZ", tz)
    assert host_zone() == zone


def test_a_copied_zone_file_is_known_by_its_bytes(monkeypatch, tmp_path):
    from config.env import host_zone

    copy = tmp_path / "localtime"
    copy.write_bytes(Path("/usr/share/zoneinfo/Asia/Jerusalem").read_bytes())
    monkeypatch.setenv("TZ", f":{copy}")
    assert host_zone() in {"Asia/Jerusalem", "Asia/Tel_Aviv", "Israel"}  # the same zone's names
