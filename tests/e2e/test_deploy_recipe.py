"""deploy/: the systemd units, the example environment and the crontab, as docs/deploy.md
installs them — each unit verified by systemd and its command started and stopped here, with the
paths of /opt/drains replaced by this checkout's."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support.db import ROOT, child_env
from tests.support.web import free_port

pytestmark = pytest.mark.slow
DEPLOY = ROOT / "deploy"
INSTALLED = "/opt/drains"
ENV_FILE = "/etc/drains/drains.env"
PREFIX = f"set -a; . {ENV_FILE}; set +a;"


def read_env_file(path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip().strip('"')
    return values


def unit(name: str, tmp_path) -> dict[str, str]:
    """The unit rewritten for this checkout, written to tmp_path; its [Service] keys returned."""
    text = (DEPLOY / name).read_text().replace(INSTALLED, str(ROOT))
    text = text.replace(ENV_FILE, str(DEPLOY / "drains.env.example"))
    (tmp_path / name).write_text(text)
    keys = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key, value)
    return keys


def service_env(port: int, tmp_path) -> dict[str, str]:
    env = child_env(**read_env_file(DEPLOY / "drains.env.example"))
    env["DATABASE_URL"] = child_env()["DATABASE_URL"]  # the test server, not the example host
    env["DJANGO_SECRET_KEY"] = "k" * 64
    env["DRAINS_WEB_BIND"] = f"127.0.0.1:{port}"
    env["DRAINS_VAR_DIR"] = str(tmp_path / "var")
    return env


def request(url: str, **headers) -> tuple[int, dict]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    req = urllib.request.Request(url, headers={"Host": "drains.example.org", **headers})
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def stop(process: subprocess.Popen, signame: str, timeout: float) -> int:
    process.send_signal(getattr(signal, signame))
    return process.wait(timeout=timeout)


def test_systemd_accepts_both_units(tmp_path):
    for name in ("drains-web.service", "drains-scheduler.service"):
        unit(name, tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(p) for p in sorted(tmp_path.glob("*.service")))],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_web_unit_serves_behind_a_tls_proxy_and_stops_on_its_kill_signal(tmp_path, transactional_db):
    keys = unit("drains-web.service", tmp_path)
    assert keys["WorkingDirectory"] == str(ROOT)
    port = free_port()
    web = subprocess.Popen(
        shlex.split(keys["ExecStart"]), cwd=keys["WorkingDirectory"],
        env=service_env(port, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, headers = request(f"{base}/api/health/")
                break
            except OSError:
                assert web.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        assert status == 200  # the load balancer's plain-HTTP probe is not redirected
        # plain HTTP is sent to HTTPS; what the proxy marks as HTTPS is served, with HSTS
        status, headers = request(f"{base}/operations")
        assert status == 301 and headers["Location"] == "https://drains.example.org/operations"
        status, headers = request(f"{base}/operations", **{"X-Forwarded-Proto": "https"})
        assert status == 302 and "/admin/login/" in headers["Location"]
        assert headers["Strict-Transport-Security"] == (
            "max-age=31536000; includeSubDomains; preload"
        )
        status, headers = request(f"{base}/admin/login/", **{"X-Forwarded-Proto": "https"})
        assert status == 200
        cookie = headers["Set-Cookie"]
        assert "csrftoken=" in cookie and "Secure" in cookie
        assert stop(web, keys["KillSignal"], float(keys["TimeoutStopSec"])) == 0
    finally:
        if web.poll() is None:
            web.kill()
        output = web.communicate()[0]
    assert "Shutting down: Master" in output, output
    assert '"GET /api/health/ HTTP/1.1" 200' in output  # the access log, to the journal


def test_the_scheduler_unit_runs_the_schedule_and_stops_on_its_kill_signal(tmp_path, transactional_db):
    keys = unit("drains-scheduler.service", tmp_path)
    scheduler = subprocess.Popen(
        shlex.split(keys["ExecStart"]), cwd=keys["WorkingDirectory"],
        env=service_env(free_port(), tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in scheduler.stdout:
            lines.append(line)
            if "scheduler started: 5 jobs" in line:
                break
        assert any("scheduler started: 5 jobs" in line for line in lines), "".join(lines)
        assert stop(scheduler, keys["KillSignal"], float(keys["TimeoutStopSec"])) == 0
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
        scheduler.communicate()


def render_crontab() -> str:
    """What `manage.py crontab add` installs on a host with the checkout in /opt/drains."""
    env = child_env(
        DRAINS_VAR_DIR=f"{INSTALLED}/var", CRONTAB_COMMAND_PREFIX=PREFIX, DJANGO_SECRET_KEY="x" * 64
    )
    script = (
        "import django; django.setup()\n"
        "from django_crontab.crontab import Crontab\n"
        "tab = Crontab(verbosity=0); tab.add_jobs(); print(''.join(tab.crontab_lines), end='')\n"
    )
    lines = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True,
    ).stdout
    lines = lines.replace(sys.executable, f"{INSTALLED}/.venv/bin/python")
    return lines.replace(str(ROOT / "manage.py"), f"{INSTALLED}/manage.py")


def test_the_example_crontab_is_what_crontab_add_installs():
    example = (DEPLOY / "crontab.example").read_text()
    installed = "".join(line for line in example.splitlines(keepends=True) if not line.startswith("#"))
    assert installed == render_crontab(), render_crontab()
