"""`make run` on the new user's road: a fresh copy of the checkout (committed files only, no
var/), DATABASE_URL unset — so the embedded PostgreSQL is created from nothing — then every step
after the virtualenv: migrate, sample data, the staff user, gunicorn and the scheduler, up to a
live /operations page, a clean Ctrl-C, and a second run that reuses what the first one made.

The test runs ``make -o venv run`` so that it never reinstalls the shared virtualenv (that step
is make's own and needs the network); it checks that ``make run`` does include it.
"""

from __future__ import annotations

import http.cookiejar
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import psutil
import pytest

from tests.support.db import ROOT
from tests.support.fresh_copy import fresh_copy, user_env
from tests.support.web import free_port

pytestmark = pytest.mark.slow
STARTUP_LIMIT = 180  # seconds from `make` to "Ready." on a loaded 2-core machine


class Run:
    """`make -o venv run` in a process group of its own, as a terminal would run it."""

    def __init__(self, env, cwd):
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "-o", "venv", "run"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def read_until(self, pattern: str, timeout: float) -> re.Match | None:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if m := re.search(pattern, line):
                    return m
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                return None
            self.lines.append(line)

    def output(self) -> str:
        return "\n".join(self.lines)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)

    def finish(self, timeout: float = 90) -> None:
        """Read to EOF: the pipe closes once make, the script and both servers are gone."""
        self.read_until(r"(?!x)x", timeout)
        self.process.wait(timeout=10)
        self.process.stdout.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            for child in self.descendants():
                child.kill()
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()


def log_in(base: str, username: str, password: str) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/admin/login/?next=/operations", timeout=30).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    data = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "username": username,
            "password": password,
            "next": "/operations",
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/admin/login/?next=/operations",
        data=data,
        headers={"Referer": f"{base}/admin/login/"},
    )
    response = opener.open(request, timeout=30)
    assert urllib.parse.urlsplit(response.geturl()).path == "/operations", response.geturl()
    return opener


def status_without_login(url: str) -> tuple[int, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        response = urllib.request.build_opener(NoRedirect).open(url, timeout=30)
        return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def test_make_run_includes_the_virtualenv_step():
    plan = subprocess.run(
        # -B: the plan from nothing, whatever this checkout already has
        ["make", "-n", "-B", "--no-print-directory", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    steps = [
        "-m venv .venv",
        "pip install --quiet -r requirements.txt",
        "scripts/run_demo.py --check-port",
        "manage.py migrate",
        "scripts/run_demo.py\n",
    ]
    positions = [plan.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), plan


def test_make_run_in_a_fresh_copy_serves_operations_and_stops_cleanly_and_reuses_on_a_second_run():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = user_env(PORT=str(port), DEMO_USERNAME="demo-operator")
    assert "DATABASE_URL" not in env

    with fresh_copy("make-run") as copy:
        first = Run(env, copy)
        try:
            ready = first.read_until(r"Ready\. Operations page:\s+(\S+)", STARTUP_LIMIT)
            assert ready, first.output()
            assert ready[1] == f"{base}/operations"
            assert first.read_until(r"Ctrl-C stops the web server and the scheduler", 10)
            out = first.output()
            password = re.search(
                r'Created the staff user "demo-operator" with the password\s+(\S+)', out
            )[1]
            assert "33 records: 33 added" in out, out
            # the scheduler starts beside the web server: wait for its line, don't race it
            assert first.read_until(r"scheduler started: 5 jobs", 60), first.output()
            assert f'Log in as "demo-operator" at {base}/admin/login/?next=/operations' in out
            # the embedded default was used: its data folder is the copy's own
            assert (copy / "var" / "pgdata" / "PG_VERSION").exists()
            key_file = copy / "var" / "secret_key"
            assert key_file.stat().st_mode & 0o777 == 0o600

            # staff only: anonymous is sent to log in; the printed password logs in; the page answers
            status, location = status_without_login(f"{base}/operations")
            assert status in (302, 403), status
            opener = log_in(base, "demo-operator", password)
            page = opener.open(f"{base}/operations", timeout=30)
            assert page.status == 200
            assert "halacha" in page.read().decode()

            # the web process is gunicorn (a master and its workers), not Django's dev server
            processes = first.descendants()
            pids = [p.pid for p in processes]
            cmdlines = [" ".join(p.cmdline()) for p in processes]
            web = [c for c in cmdlines if "gunicorn" in c]
            assert len(web) >= 2, cmdlines  # the master and at least one worker
            assert all("config/gunicorn.conf.py" in c and "config.wsgi" in c for c in web), web
            assert not [c for c in cmdlines if "runserver" in c], cmdlines
            assert any("run_scheduler" in c for c in cmdlines), cmdlines
            # its access log went to var/log, where the banner said
            access_log = copy / "var" / "log" / "web-access.log"
            assert f"Web access log:          {access_log}" in first.output()
            assert '"GET /operations HTTP/1.1" 200' in access_log.read_text()
            first.ctrl_c()
            first.finish()
        except BaseException:
            print(first.output())  # the servers' own output, shown with the failure
            raise
        finally:
            first.kill()
        assert "Stopped." in first.output()
        assert "scheduler stopped" in first.output()
        assert "Shutting down: Master" in first.output()  # gunicorn's own graceful stop
        assert not [
            pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
        ]
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
        key = key_file.read_text()

        second = Run(env, copy)
        try:
            assert second.read_until(r"Ready\. Operations page:", STARTUP_LIMIT), second.output()
            out = second.output()
            assert 'Reusing the staff user "demo-operator"' in out
            assert password not in out and "with the password" not in out
            assert "33 records: 0 added, 0 updated, 33 unchanged" in out
            log_in(base, "demo-operator", password)  # the first run's password still works
            second.ctrl_c()
            second.finish()
        except BaseException:
            print(second.output())
            raise
        finally:
            second.kill()
        assert "Stopped." in second.output()
        assert key_file.read_text() == key  # the generated key is made once, then reused
