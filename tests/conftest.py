import uuid

import freezegun
import pytest

from tests.support import processes

_TOKEN = pytest.StashKey[tuple[str, set[int]]]()


# pytest's own clock must not be frozen: a fixture that freezes time during setup otherwise
# makes --durations report setups of 1.8 billion seconds (the frozen epoch, not the real time);
# nor may the clock of pytest-xdist's worker, which reports those durations to the controller.
freezegun.configure(extend_ignore_list=["_pytest", "xdist", "execnet"])


def pytest_configure(config):
    # Orphans of a test (a detached drain whose parent exited) come back to us to be reaped.
    processes.become_subreaper()


def pytest_collection_modifyitems(items):
    """The slow tests (``slow``: many processes, a private server, a browser) first, each file's
    in their order: the pytest-xdist workers start on the long ones, and the short ones fill in
    at the end, so no worker is left alone with a long test while the other has nothing to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _own_the_test_processes(request, monkeypatch):
    """Every process this test starts inherits a token; the teardown hook below ends them."""
    token = uuid.uuid4().hex
    request.node.stash[_TOKEN] = (token, processes.children())
    monkeypatch.setenv(processes.ENV_KEY, token)


@pytest.fixture(autouse=True)
def _own_journal(tmp_path, monkeypatch, settings):
    """A journal of paid results per test (drains/journal.py), in-process and for its children,
    so that an entry one test leaves is never replayed into another test's database."""
    path = tmp_path / "journal"
    settings.DRAINS_JOURNAL_DIR = path
    monkeypatch.setenv("DRAINS_JOURNAL_DIR", str(path))
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """Before any fixture is torn down (so before the test database is flushed): kill and reap
    what the test left running, whether it passed or failed."""
    owner = item.stash.get(_TOKEN, None)
    if owner is None:
        return
    killed = processes.reap(*owner)
    if killed:
        item.add_report_section("teardown", "reaped", "killed at the end of the test: " + ", ".join(killed))


@pytest.fixture
def admin_user(db, django_user_model):
    """pytest-django's admin user ("admin" / "password"), its password hashed once per session
    (tests/support/users.py), not once per test."""
    from tests.support.users import password_hash

    user = django_user_model._default_manager.create_superuser(
        username="admin", email="admin@example.com", password=None)
    user.password = password_hash("password")
    user.save(update_fields=["password"])
    return user


@pytest.fixture
def output_dir(request, tmp_path_factory):
    """A folder for a test's artefacts (screenshots, logs) that survives the run: test-output/."""
    from tests.support.db import ROOT

    path = ROOT / "test-output" / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def reaped_process():
    """Start a harmless long-lived process (``sleep``) whose pid a test can point at; it is
    killed and reaped when the test ends."""
    import subprocess

    started = []

    def start() -> subprocess.Popen:
        process = subprocess.Popen(["sleep", "600"])
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


_SWEEP_COUNTS = pytest.StashKey[dict[str, int]]()
_SWEEPS = [("tests.test_input_sweep", "input sweep (commands)"),
           ("tests.test_settings_sweep", "input sweep (settings)")]


def _sweep_counts() -> dict[str, int]:
    import sys

    counts = {}
    for module, what in _SWEEPS:
        sweep = sys.modules.get(module)
        if sweep is not None and sweep.CASES:
            counts[what] = len(sweep.CASES)
    return counts


def pytest_sessionfinish(session):
    """On a pytest-xdist worker: hand the cases this worker ran to the controller, which runs
    no test itself and adds the workers' counts up."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["sweep_counts"] = _sweep_counts()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    counts = getattr(node, "workeroutput", {}).get("sweep_counts", {})
    collected = node.config.stash.setdefault(_SWEEP_COUNTS, {})
    for what, count in counts.items():
        collected[what] = collected.get(what, 0) + count


def pytest_terminal_summary(terminalreporter):
    """The generated input sweeps (tests/test_input_sweep.py, test_settings_sweep.py) say how
    many cases they ran, whether the tests ran here or on pytest-xdist workers."""
    counts = {**terminalreporter.config.stash.get(_SWEEP_COUNTS, {}), **_sweep_counts()}
    for _, what in _SWEEPS:
        if what in counts:
            terminalreporter.write_line(f"{what}: {counts[what]} cases")
