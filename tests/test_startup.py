"""The front door: --settings and DJANGO_SETTINGS_MODULE, a missing database as one line, the
generated signing key, and `check --deploy` with the documented production environment."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time

import pytest

from tests.support.db import ROOT, child_env, manage

COLLIDING_SETTINGS = '''
from config.settings import *  # noqa: F403

# A host adds a job in a minute the supervisor already uses.
CRONJOBS = CRONJOBS + [  # noqa: F405
    ("20 3 * * *", "django.core.management.call_command", ["send_digest"], {}, ""),
]
'''


@pytest.fixture
def host_settings(tmp_path):
    (tmp_path / "hostsettings.py").write_text(COLLIDING_SETTINGS)
    return tmp_path


def test_settings_flag_is_honoured(host_settings):
    plain = manage("check")
    assert plain.returncode == 0, plain.stderr
    layered = manage("check", "--settings=hostsettings", f"--pythonpath={host_settings}")
    assert layered.returncode != 0
    assert "supervise_drains" in layered.stderr and "send_digest" in layered.stderr, layered.stderr


def test_django_settings_module_is_honoured(host_settings):
    env = child_env(DJANGO_SETTINGS_MODULE="hostsettings", PYTHONPATH=str(host_settings))
    layered = manage("check", env=env)
    assert layered.returncode != 0
    assert "send_digest" in layered.stderr, layered.stderr


def test_installed_cron_lines_carry_a_hosts_settings_module(host_settings):
    from django.conf import settings

    env = child_env(DJANGO_SETTINGS_MODULE="hostsettings", PYTHONPATH=str(host_settings))
    shown = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; "
         "print(settings.CRONTAB_DJANGO_SETTINGS_MODULE)"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )
    assert shown.stdout.strip() == "hostsettings"
    assert settings.CRONTAB_DJANGO_SETTINGS_MODULE is None  # the default adds nothing


def test_a_settings_module_that_does_not_import_is_one_line():
    bad = manage("check", "--settings=no_such_settings_module")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "no_such_settings_module" in bad.stderr and "could not be imported" in bad.stderr


@pytest.mark.parametrize(
    "command",
    [["migrate"], ["drain_halacha"], ["supervise_drains"], ["burst", "halacha", "status"],
     ["send_digest"], ["fetch_decisions"], ["migrate_lock_status"]],
)
def test_a_database_that_does_not_exist_is_one_line_with_the_createdb_to_run(command):
    env = child_env("no_such_database_here")
    done = manage(*command, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip()
    assert "\n" not in line, done.stderr
    assert 'the database "no_such_database_here" does not exist' in line
    assert re.search(r"`createdb -h \S+ -p \d+ (-U \S+ )?no_such_database_here`", line), line
    assert "Traceback" not in done.stdout + done.stderr


def test_an_unreachable_server_is_one_line():
    env = child_env()
    env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:1/drains"
    done = manage("drain_halacha", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("Database error: cannot connect to PostgreSQL at 127.0.0.1:1")
    assert "\n" not in done.stderr.strip()


# --- the generated signing key ---------------------------------------------------------------

KEY_DIGEST = (
    "import hashlib, sys, time\n"
    "start = float(sys.argv[1])\n"
    "time.sleep(max(0, start - time.time()))\n"  # all of them load settings at the same moment
    "from django.conf import settings\n"
    "print(hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest(), settings.SECRET_KEY_SOURCE)\n"
)


def key_env(var, **extra):
    env = child_env(DRAINS_VAR_DIR=str(var), **extra)
    env.pop("DJANGO_SECRET_KEY", None)
    return env


def key_of(var, start=0.0):
    return subprocess.Popen(
        [sys.executable, "-c", KEY_DIGEST, str(start)],
        cwd=ROOT, env=key_env(var), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_the_generated_key_is_random_per_installation_made_once_private_and_untracked(tmp_path):
    one, two = tmp_path / "one" / "var", tmp_path / "two" / "var"
    first = key_of(one).communicate()[0].split()
    again = key_of(one).communicate()[0].split()
    other = key_of(two).communicate()[0].split()
    assert first[1] == "file"
    assert first == again  # created once, then read back
    assert first[0] != other[0]  # nobody else's key
    key_file = one / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key_file.read_text().strip()) >= 50
    assert hashlib.sha256(key_file.read_text().strip().encode()).hexdigest() == first[0]
    # the repository holds no key, and var/ (where it lives) is ignored by git
    ignored = subprocess.run(["git", "check-ignore", "-q", "var/secret_key"], cwd=ROOT)
    assert ignored.returncode == 0
    old_key = "dev-only-" + "insecure"  # the development key the repository used to carry
    tracked = subprocess.run(["git", "grep", "-I", "-l", old_key], cwd=ROOT,
                             capture_output=True, text=True)
    assert tracked.stdout == ""


def test_eight_processes_starting_at_once_agree_on_one_key(tmp_path):
    var = tmp_path / "var"
    start = time.time() + 2.0
    children = [key_of(var, start) for _ in range(8)]
    results = [child.communicate(timeout=60) for child in children]
    assert all(child.returncode == 0 for child in children), [r[1] for r in results]
    digests = {out.split()[0] for out, _ in results}
    assert len(digests) == 1, digests
    assert [p.name for p in var.iterdir()] == ["secret_key"]  # no temporary file left behind


def test_an_unwritable_var_is_one_line_naming_the_variable(tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    done = manage("check", env=key_env(blocker / "var"))
    assert done.returncode == 2
    assert done.stderr.startswith("Configuration error: DJANGO_SECRET_KEY is unset")
    assert "Traceback" not in done.stderr


# --- check --deploy --------------------------------------------------------------------------


def production_env() -> dict[str, str]:
    """deploy/drains.env.example, with its secret filled in as docs/deploy.md says."""
    env = child_env()
    for line in (ROOT / "deploy" / "drains.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    assert env["DJANGO_SECRET_KEY"].startswith("CHANGE-ME")
    env["DJANGO_SECRET_KEY"] = os.urandom(32).hex()
    env["DATABASE_URL"] = child_env()["DATABASE_URL"]  # the test server, not the example host
    return env


def test_check_deploy_with_the_documented_production_environment_prints_no_warning():
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout, done.stdout


def example_env() -> dict[str, str]:
    """deploy/drains.env.example exactly as shipped, on the test database."""
    env = child_env()
    for line in (ROOT / "deploy" / "drains.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def test_check_deploy_with_the_example_not_filled_in_refuses_in_one_line_naming_the_key():
    """Copied and not filled in, the example would run with a key everyone knows (Django's
    security.W009 only warned): every command refuses it at the door instead."""
    done = manage("check", "--deploy", env=example_env())
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "Configuration error: DJANGO_SECRET_KEY still holds the example's placeholder "
        "CHANGE-ME; fill it in (docs/deploy.md, 'The production environment')."
    ]


def test_check_deploy_with_the_example_key_filled_in_but_the_password_not_names_database_url():
    env = example_env()
    env["DJANGO_SECRET_KEY"] = os.urandom(32).hex()
    done = manage("check", "--deploy", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("Configuration error: DATABASE_URL still holds the example's")


def test_check_deploy_warns_when_the_key_is_the_generated_one(tmp_path):
    env = production_env()
    env.pop("DJANGO_SECRET_KEY")
    env["DRAINS_VAR_DIR"] = str(tmp_path / "var")
    done = manage("check", "--deploy", env=env)
    assert "config.W001" in done.stderr and "several web hosts need one shared key" in done.stderr.lower()


def test_check_deploy_names_what_a_plain_environment_lacks():
    done = manage("check", "--deploy", env=child_env())
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in done.stderr, done.stderr
