"""`make run`: the whole system on one machine — sample data, a staff user, the web server and
the scheduler — until Ctrl-C.

The Makefile has already built the virtualenv and migrated (embedded PostgreSQL in var/pgdata
unless DATABASE_URL is set). This script imports ``halacha/samples`` (idempotent), creates the
staff user once with a random password that it prints once, starts the production web server
(gunicorn, with config/gunicorn.conf.py) and ``run_scheduler`` as child processes, prints where
to log in, and on Ctrl-C or SIGTERM stops both (the scheduler gives running jobs their grace
period). Running it again reuses everything.
It never resets a password or deletes data.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

USERNAME = os.environ.get("DEMO_USERNAME", "operator")
HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 120


def say(message: str = "") -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def prepare() -> Path:
    """Sample decisions and the staff user, in this process; then let go of the database."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections, transaction

    # Static files for the admin, the page and the API docs, served by WhiteNoise.
    call_command("collectstatic", interactive=False, verbosity=0)
    say("Importing the sample decisions (halacha/samples) ...")
    call_command("import_decisions", str(ROOT / "halacha" / "samples"), progress_every=0)

    User = get_user_model()
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        user, created = User.objects.get_or_create(
            username=USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
    if created:
        say(f'Created the staff user "{USERNAME}" with the password  {password}')
        say("  (shown this once; `manage.py changepassword " + USERNAME + "` sets a new one)")
    else:
        if not user.is_staff:
            raise SystemExit(
                f'The user "{USERNAME}" exists but is not staff; set DEMO_USERNAME to another '
                "name or make it staff in the admin."
            )
        say(
            f'Reusing the staff user "{USERNAME}" (its password was printed when it was '
            f"created; `manage.py changepassword {USERNAME}` sets a new one)."
        )
    connections.close_all()
    settings.DRAINS_LOG_DIR.mkdir(parents=True, exist_ok=True)
    return settings.DRAINS_LOG_DIR


def start(*argv: str, env: dict | None = None) -> subprocess.Popen:
    # A session of its own: Ctrl-C reaches this script only, which stops each child once.
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, start_new_session=True)


def start_web(port: str, log_dir: Path) -> subprocess.Popen:
    """gunicorn, as in production; its access log goes to var/log, not over the terminal."""
    env = dict(os.environ)
    env["DRAINS_WEB_BIND"] = f"{HOST}:{port}"
    config = ROOT / "config" / "gunicorn.conf.py"
    return start("-m", "gunicorn", "-c", str(config),
                 "--access-logfile", str(log_dir / "web-access.log"), "config.wsgi", env=env)


def port_problem(port: str) -> str | None:
    """Why the web server could not listen on HOST:port ("" or None when it can): checked
    before anything starts, so that another server on the port is never taken for ours."""
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"PORT={port!r} is not a TCP port number (1-65535)."
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As gunicorn binds: SO_REUSEADDR, so a port left in TIME_WAIT by a previous run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"PORT={port}: something already listens on {HOST}:{port}; stop it or run "
                    "`make run PORT=<another port>`."
                )
            return f"PORT={port}: cannot listen on {HOST}:{port} ({exc.strerror})."
    return None


def workers_problem(value: str | None) -> str | None:
    """gunicorn reads WEB_CONCURRENCY itself while it imports, before config/gunicorn.conf.py
    can check it (a traceback): so it is checked here, with the port."""
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= 64:
        return f"WEB_CONCURRENCY={value!r} is not a worker count; give a whole number from 1 to 64."
    return None


def wait_until_serving(url: str, children: list[subprocess.Popen]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered (a redirect to log in, say): it is serving
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


def say_ready(base: str, log_dir: Path) -> None:
    say("")
    say(f"Ready. Operations page:  {base}/operations")
    say(f'Log in as "{USERNAME}" at {base}/admin/login/?next=/operations')
    say(f"API token for scripts:   .venv/bin/python manage.py mint_token {USERNAME}")
    say(f"Web access log:          {log_dir / 'web-access.log'}")
    say("Ctrl-C stops the web server and the scheduler.")
    say("")


class Children:
    """The web server and the scheduler: started together, stopped together (SIGTERM to each
    one still running; a second Ctrl-C makes the scheduler stop waiting for its jobs)."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []
        self.signals = 0

    def stop(self) -> None:
        for child in self.processes:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def on_signal(self, signum, frame) -> None:
        self.signals += 1
        self.stop()

    def dead(self) -> list[subprocess.Popen]:
        return [c for c in self.processes if c.poll() is not None]


def main(argv: list[str]) -> int:
    port = os.environ.get("PORT", "8000")
    problem = port_problem(port) or workers_problem(os.environ.get("WEB_CONCURRENCY"))
    if problem:
        sys.stderr.write(problem + "\n")
        return 2
    if argv[1:] == ["--check-port"]:  # the Makefile's first step, before it migrates
        return 0
    log_dir = prepare()
    base = f"http://{HOST}:{port}"
    failed = False  # a child died, or never served: make run exits non-zero
    children = Children()
    signal.signal(signal.SIGINT, children.on_signal)
    signal.signal(signal.SIGTERM, children.on_signal)

    say(f"Starting the web server on {base} and the scheduler (CRONJOBS) ...")
    web = start_web(port, log_dir)
    children.processes.append(web)
    children.processes.append(start(str(ROOT / "manage.py"), "run_scheduler"))

    if wait_until_serving(f"{base}/operations", children.processes):
        say_ready(base, log_dir)
    elif not children.signals:
        dead = children.dead()
        what = ("web server" if web in dead else "scheduler") if dead else "web server"
        say(f"The {what} did not start"
            + (f" (exit {dead[0].returncode})" if dead else f": no answer on {base}")
            + " - see its output above.")
        failed = True
        children.stop()

    # Whichever stops first (Ctrl-C, or a child dying), the other is stopped too.
    while all(child.poll() is None for child in children.processes):
        time.sleep(0.2)
    if not children.signals and not failed:
        dead = children.dead()
        name = "web server" if web in dead else "scheduler"
        say(f"The {name} stopped (exit {dead[0].returncode}); stopping the rest.")
        failed = True
        children.stop()
    for child in children.processes:
        child.wait()
    say("Stopped.")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
