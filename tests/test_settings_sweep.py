"""Every setting read from the environment is checked at start-up (generated): each variable
config/settings.py and config/app_settings.py read, found by reading the files, is set to the
edges of every kind and to hypothesis-generated text; loading the settings either works or
raises ImproperlyConfigured in one line that names the variable — never another exception (a
traceback at start-up).

The settings modules are executed afresh in process (runpy) for speed; the front door's own
handling (one line on stderr, exit 2) is shown through ``manage.py`` for a few of them.
"""

from __future__ import annotations

import re
import runpy

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.support.db import ROOT, child_env, manage

# config/settings.py star-imports config/app_settings.py; each is run afresh, so that the second
# reads the variable too (an import would find it loaded already).
SETTINGS = [ROOT / "config" / "settings.py", ROOT / "config" / "app_settings.py"]
READ = re.compile(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"')
VARIABLES = sorted({name for path in SETTINGS for name in READ.findall(path.read_text())})
# Read by other modules through config/env.py or by tools, not at settings load.
NOT_AT_LOAD = {"DRAINS_WEB_BIND"}
EDGES = [
    "", " ", "x" * 10_000, "\udcff", "nan", "inf", "-inf", "-1", "0", str(2**63), "1e999",
    "١٢", "no such thing", "file:///etc/passwd", "0001-01-01T00:00:00+15:59", "CHANGE-ME",
    "a,b,,c", "http://", "300/min", "off", "yes", "Asia/Jerusalem", "../../etc",
]
CASES: list[int] = []


def load(monkeypatch, name: str, value: str) -> None:
    """Load the settings with ``name=value``; the property holds or the test fails."""
    monkeypatch.setenv("DJANGO_SECRET_KEY", "k" * 64)  # no key file is written
    monkeypatch.setenv(name, value)
    CASES.append(1)
    try:
        for path in SETTINGS:
            runpy.run_path(str(path))
    except ImproperlyConfigured as exc:
        message = str(exc)
        assert name in message, f"{name}={value[:40]!r}: {message}"
        assert "\n" not in message.strip(), message


def test_the_sweep_finds_the_variables():
    assert len(VARIABLES) > 30
    assert {"DATABASE_URL", "FETCH_FEED_URL", "DRAINS_QUOTA_WEEKLY_RESERVE", "DJANGO_SECRET_KEY"} <= set(
        VARIABLES
    )


@pytest.mark.parametrize("name", VARIABLES)
def test_every_variable_at_the_edges(monkeypatch, name):
    for value in EDGES:
        with monkeypatch.context() as patch:
            load(patch, name, value)


@hsettings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(VARIABLES), value=st.text(max_size=40).filter(lambda v: "\x00" not in v))
def test_every_variable_with_generated_text(monkeypatch, name, value):
    with monkeypatch.context() as patch:
        load(patch, name, value)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("FETCH_FEED_URL", "notaurl", "FETCH_FEED_URL='notaurl' is not an http:// or https:// URL"),
    ("FETCH_FEED_URL", "file:///etc/passwd", "FETCH_FEED_URL='file:///etc/passwd' is not an http"),
    ("DRAINS_QUOTA_WEEKLY_RESERVE", "inf", "DRAINS_QUOTA_WEEKLY_RESERVE='inf' is not a finite number."),
    ("DRAINS_QUOTA_WEEKLY_RESERVE", "2", "DRAINS_QUOTA_WEEKLY_RESERVE=2 is above the maximum of 0.9."),
    ("DRAINS_OPERATOR_TZ", "Mars/Olympus", "DRAINS_OPERATOR_TZ='Mars/Olympus' is not a time zone"),
    ("DRAINS_DB_DEAD_PEER_SECONDS", "lots", "DRAINS_DB_DEAD_PEER_SECONDS='lots' is not a whole number."),
    ("DIGEST_RECIPIENTS", "ops@example.org,nobody", "DIGEST_RECIPIENTS: 'nobody' is not an email"),
])
def test_the_front_door_says_it_in_one_line_and_exits_2(name, value, expected):
    env = child_env(**{name: value})
    done = manage("check", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Configuration error: ")
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
