"""Every process a test starts ends with that test, pass or fail.

Each test gets a token in its environment (``TEST_PROCESS_OWNER``); every process it starts
inherits it — a ``manage.py`` child, a drain the supervisor starts detached (``posix_spawn`` in
its own session) and that drain's children, even after their parent has exited. The pytest
process is a child subreaper (Linux ``prctl``), so such orphans are re-parented to it rather than
to init, and can be waited for. When the test ends, every live process that carries its token is
killed with SIGKILL and waited for, and the zombies it left are reaped — before the test's
database is flushed, so no child of one test writes into the next.

PostgreSQL's own processes are never touched (the embedded server may be started by whichever
test first needs it, and then carries that test's token).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

ENV_KEY = "TEST_PROCESS_OWNER"
_PR_SET_CHILD_SUBREAPER = 36
_SPARED = {"postgres", "postmaster", "pg_ctl"}


def become_subreaper() -> bool:
    """Orphaned descendants come back to this process (Linux only); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(command name, parent pid, state) from /proc, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    return head.partition("(")[2], int(fields[1]), fields[0]


def _carries(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _pids() -> list[int]:
    me = os.getpid()
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != me]


def owned(token: str) -> list[tuple[int, str]]:
    """Live (not zombie) processes carrying ``token``: (pid, command name)."""
    marker = f"{ENV_KEY}={token}".encode()
    found = []
    for pid in _pids():
        stat = _stat(pid)
        if stat and stat[2] != "Z" and stat[0] not in _SPARED and _carries(pid, marker):
            found.append((pid, stat[0]))
    return found


def children() -> set[int]:
    me = os.getpid()
    return {pid for pid in _pids() if (stat := _stat(pid)) and stat[1] == me}


def reap(token: str, children_before: set[int], timeout: float = 10.0) -> list[str]:
    """Kill what ``token``'s test left running, wait for it, reap its zombies.

    Returns "pid (name)" of each process that was still running, for the caller to report.
    """
    killed: dict[int, str] = {}
    limit = time.monotonic() + timeout
    while True:
        alive = owned(token)
        if not alive:
            break
        if time.monotonic() > limit:
            raise RuntimeError(f"processes of the test survive SIGKILL: {alive}")
        for pid, name in alive:
            killed.setdefault(pid, name)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap_zombies(children_before)
        time.sleep(0.01)
    _reap_zombies(children_before)
    return [f"{pid} ({name})" for pid, name in killed.items()]


def _reap_zombies(children_before: set[int]) -> None:
    # Only children the test made: a zombie of an earlier (session) fixture is its own business.
    for pid in children() - children_before:
        stat = _stat(pid)
        if stat and stat[2] == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass  # a Popen of the test waited for it meanwhile


def stop(process: subprocess.Popen, *, timeout: float = 20) -> None:
    """SIGTERM a server a test started, SIGKILL it if it lingers, and close its output pipe."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
