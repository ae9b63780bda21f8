import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import NotPostgres, parse_database_url
from tests.support.db import ROOT, child_env, manage


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


def test_the_hung_kill_grace_outlasts_the_cli_timeout(settings):
    # a SIGTERMed run finishes the call in flight: its result reaches the journal before SIGKILL
    assert settings.DRAINS_HUNG_KILL_GRACE_SECONDS > settings.HALACHA_CLI_TIMEOUT_SECONDS


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


# --- The variables read at start-up are the README's table --------------------------------------
_RECORD = r"""
import json, os, runpy, sys
seen = set()
ROOT = os.getcwd()


class Recording(type(os.environ)):
    def __getitem__(self, key):
        frame = sys._getframe(1)
        while frame and frame.f_code.co_filename.endswith(("os.py", "os>", "_collections_abc.py", "abc>")):
            frame = frame.f_back
        where = frame.f_code.co_filename if frame else ""
        if where.startswith(ROOT) and "/.venv/" not in where or where.endswith("/conf/__init__.py"):
            seen.add(key)  # read by the project's code, or Django's DJANGO_SETTINGS_MODULE
        return super().__getitem__(key)


os.environ.__class__ = Recording  # os.environ.get and `in` go through __getitem__
from django.conf import settings

settings.INSTALLED_APPS  # loads config.settings and config.app_settings
import config.embedded_pg  # noqa: E402
runpy.run_path("config/gunicorn.conf.py")
print(json.dumps(sorted(seen)))
"""
_README_ROW = re.compile(r"^\| ([^|]*`[A-Z][A-Z0-9_]+`[^|]*) \|", re.MULTILINE)


def _read_at_start_up(**env: str) -> set[str]:
    child = child_env(**env)
    child.pop("DRAINS_CRON_TZ", None)  # the settings write it back for children; unset, TZ is read
    done = subprocess.run([sys.executable, "-c", _RECORD], cwd=ROOT, env=child,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {name for cell in _README_ROW.findall(table)
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_the_readme_documents_every_variable_read_at_start_up_and_no_other():
    # Both branches of the settings: SMTP (EMAIL_HOST set, its login read) and the console.
    read = _read_at_start_up() | _read_at_start_up(EMAIL_HOST="smtp.example.org")
    assert "EMAIL_HOST_PASSWORD" in read and "DATABASE_URL" in read  # the recorder records
    assert read == _documented()
    assert len(read) <= 40, sorted(read)


def test_a_variable_of_ours_that_nothing_reads_is_named_by_check():
    # A tuning knob that became a constant, and a typo: named; a variable that is read: not.
    done = manage("check", env=child_env(DRAINS_CHUNK_SIZE="4", DRAINS_QUOTA_WEEKLY_RESERV="0.2",
                                          DJANGO_HSTS_PRELOAD="1", DRAINS_QUOTA_WEEKLY_RESERVE="0.2"))
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "config.W002" in line]
    assert line.endswith("read by nothing: DJANGO_HSTS_PRELOAD, DRAINS_CHUNK_SIZE, "
                         "DRAINS_QUOTA_WEEKLY_RESERV.")
    assert "config.W002" not in manage("check", env=child_env()).stderr


@pytest.mark.parametrize(("port", "ssl", "starttls"), [
    ("465", True, False),  # implicit TLS
    ("25", False, False),  # plain, to a relay of the host's own
    ("587", False, True),  # submission: STARTTLS
    ("2525", False, True),
])
def test_the_smtp_port_says_the_protocol(monkeypatch, port, ssl, starttls):
    import runpy

    monkeypatch.setenv("EMAIL_HOST", "smtp.example.org")
    monkeypatch.setenv("EMAIL_PORT", port)
    loaded = runpy.run_path(str(ROOT / "config" / "app_settings.py"))
    assert (loaded["EMAIL_USE_SSL"], loaded["EMAIL_USE_TLS"]) == (ssl, starttls)


@pytest.mark.parametrize("name", ["DRAINS_PGDATA", "DRAINS_EMBEDDED_DB_NAME"])
def test_a_variable_that_once_moved_the_data_is_refused_not_ignored(name):
    # Ignored, it would start an empty embedded database elsewhere: refused, in one line.
    done = manage("check", env=child_env(**{name: "/srv/drains/pgdata"}))
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Configuration error: {name} is no longer read: ") and "DRAINS_VAR_DIR" in line
