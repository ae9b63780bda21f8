"""Brute force is throttled: the admin login locks after N failures (django-axes) until a command
lifts it, and the API answers 429 with Retry-After, counting in the shared cache (the database
cache here), so two server processes count together."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from tests.support.db import ROOT, child_env, with_settings

SNAPSHOT = "/api/operations/"


# --- the login: django-axes ---------------------------------------------------------------------

def _login(client: Client, password: str):
    return client.post("/admin/login/?next=/admin/",
                       {"username": "olga", "password": password})


def test_admin_login__locked_after_n_failures_and_unlocked_by_the_command(operator, settings):
    operator.set_password("the-right-pass-phrase")
    operator.save()
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = _login(client, "wrong")
        assert response.status_code == 200  # the form again, with its error
    response = _login(client, "wrong")
    assert response.status_code == 429
    assert "manage.py axes_reset_username" in response.content.decode()
    # Locked: the right password is refused too.
    assert _login(client, "the-right-pass-phrase").status_code == 429
    assert "_auth_user_id" not in client.session

    out = StringIO()
    call_command("axes_reset_username", "olga", stdout=out)
    assert out.getvalue().strip() == "1 attempts removed."
    response = _login(client, "the-right-pass-phrase")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.session["_auth_user_id"] == str(operator.pk)


def test_admin_login__another_address_is_not_locked_by_the_first(operator, settings):
    operator.set_password("the-right-pass-phrase")
    operator.save()
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(attacker, "wrong")
    assert _login(attacker, "the-right-pass-phrase").status_code == 429
    assert _login(Client(REMOTE_ADDR="198.51.100.7"), "the-right-pass-phrase").status_code == 302


# --- the API: DRF throttles ---------------------------------------------------------------------

def test_api__invalid_tokens_are_answered_429_after_the_limit(db, settings):
    settings.DRAINS_API_THROTTLE_RATES = {**settings.DRAINS_API_THROTTLE_RATES,
                                          "auth_failure": "10/min"}
    statuses = []
    for i in range(40):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {i:064x}")
        response = client.get(SNAPSHOT)
        statuses.append(response.status_code)
    assert statuses == [401] * 10 + [429] * 30
    body = response.json()["error"]
    assert body["code"] == "throttled"
    assert "Expected available in" in body["message"]
    assert 1 <= int(response["Retry-After"]) <= 60


def test_api__a_valid_token_from_the_throttled_address_waits_too(token, settings):
    settings.DRAINS_API_THROTTLE_RATES = {**settings.DRAINS_API_THROTTLE_RATES,
                                          "auth_failure": "3/min"}
    for _ in range(3):
        APIClient().get(SNAPSHOT, HTTP_AUTHORIZATION="Token wrong")
    response = APIClient().get(SNAPSHOT, HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 429
    other_address = APIClient(REMOTE_ADDR="198.51.100.7")
    assert other_address.get(SNAPSHOT, HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_api__burst_toggles_per_user_are_throttled(api, frozen, settings):
    settings.DRAINS_API_THROTTLE_RATES = {**settings.DRAINS_API_THROTTLE_RATES, "burst": "3/min"}
    url = "/api/operations/drains/halacha/burst"
    statuses = [api.post(url, {"on": False}, format="json").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert api.get(SNAPSHOT).status_code == 200  # reading is another budget


def test_health__is_not_throttled(db, settings):
    # The probe that reports the database down must not need the database-backed counters.
    settings.DRAINS_API_THROTTLE_RATES = {**settings.DRAINS_API_THROTTLE_RATES, "address": "2/min"}
    assert [Client().get("/api/health/").status_code for _ in range(4)] == [200] * 4


def test_api__forwarded_for_is_ignored_without_a_proxy(db, settings):
    settings.DRAINS_API_THROTTLE_RATES = {**settings.DRAINS_API_THROTTLE_RATES, "address": "2/min"}
    statuses = [Client().get(SNAPSHOT, HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code
                for i in range(3)]
    assert statuses == [401, 401, 429]


# --- two server processes share the counts ------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited: {proc.stderr.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"gunicorn on {port} never listened")


@pytest.mark.slow
def test_api__429_with_retry_after_across_two_server_processes(transactional_db):
    cache.clear()  # the cache table outlives transactional tests' flushes
    env = with_settings(child_env(), DRAINS_API_THROTTLE_RATES={
        **django_settings.DRAINS_API_THROTTLE_RATES, "address": "6/min"})
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    ports, procs = [_free_port(), _free_port()], []
    try:
        for port in ports:
            procs.append(subprocess.Popen(
                [gunicorn, "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
                 "--workers", "1", "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            ))
        for port, proc in zip(ports, procs, strict=True):
            _wait_listening(port, proc)
        answers = []
        for i in range(8):
            conn = http.client.HTTPConnection("127.0.0.1", ports[i % 2], timeout=30)
            conn.request("GET", SNAPSHOT)
            response = conn.getresponse()
            answers.append((ports[i % 2], response.status, response.getheader("Retry-After"),
                            response.getheader("Content-Type"), response.read()))
            conn.close()
        statuses = [status for _, status, _, _, _ in answers]
        # Each process alone saw 3 or 4 requests; only a shared count reaches the limit of 6.
        assert statuses == [401] * 6 + [429] * 2, answers
        for _, _, retry_after, content_type, body in answers[6:]:
            assert 1 <= int(retry_after) <= 60
            assert content_type == "application/json"
            assert b'"code":"throttled"' in body
        assert {port for port, *_ in answers[6:]} == set(ports)  # both processes refuse
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()
