"""GET /api/health/ against the production server (gunicorn) in child processes: a healthy database, an unreachable
one, and one whose schema is behind."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest
from django.test import Client

from tests.support.db import admin_connect, child_env
from tests.support.web import gunicorn


@contextmanager
def served(env):
    with gunicorn(env) as base:
        yield base


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_health__ok_in_process(db):
    response = Client().get("/api/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_health__ok_from_a_real_server_without_credentials():
    with served(child_env()) as base:
        assert get(base + "/api/health/") == (200, {"status": "ok"})


@pytest.mark.django_db(transaction=True)
def test_health__503_when_the_database_is_unreachable():
    env = child_env()
    env["DATABASE_URL"] = "postgresql://postgres:secret@127.0.0.1:1/drains_nowhere"
    with served(env) as base:
        status, body = get(base + "/api/health/")
    assert status == 503
    assert body == {"status": "unavailable", "reason": "database unreachable"}


@pytest.mark.django_db(transaction=True)
def test_health__503_when_migrations_are_unapplied():
    name = f"h4_health_unmigrated_{os.getpid()}"
    with admin_connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with served(child_env(name)) as base:
            status, body = get(base + "/api/health/")
    finally:
        with admin_connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["reason"].startswith("schema not current: ")
    assert body["reason"].endswith(" unapplied migrations")
    assert set(body) == {"status", "reason"}  # no migration names, no versions, no hosts
