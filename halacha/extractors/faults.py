"""Which failures of a call are no item's fault, as the backends meet them: the one place that
decides it for an HTTP status, the CLI's login notices and a signal (drains/runner/plugin.py
``HostFault`` says what follows: the run stops, no item is charged, the drain is blocked until a
probe call works). Each fault carries what an operator can do about it.
"""

from __future__ import annotations

import re
import signal

from drains.failures import one_line
from drains.runner.plugin import HostFault

SERVICE_DOWN_ADVICE = (
    "nothing to mend here if the service is down: the drain probes it again on its own; "
    "check the network and the service's status page"
)


def service_fault(status: int | None, said: str, *, service: str, login_advice: str) -> HostFault | None:
    """The host fault an HTTP status from ``service`` is, or None when it is the item's (or a
    limit's) to answer: refused credentials (401, 403) and the service's own failures (5xx, not
    529, which is an overload the runtime retries) are no item's fault."""
    if status in (401, 403):
        return HostFault(f"{service} refused the login (HTTP {status}): {said}", advice=login_advice)
    if status is not None and status >= 500 and status != 529:
        return HostFault(f"{service} failed with HTTP {status}: {said}", advice=SERVICE_DOWN_ADVICE)
    return None


LOGIN_ADVICE = (
    "log in again as the user the drains run as (`claude /login`), or for a headless "
    "subscriber run `claude setup-token` and set CLAUDE_CODE_OAUTH_TOKEN to the token it prints"
)
_LOGIN_TEXT = re.compile(
    r"not logged in|please run /login|invalid api key|oauth token has expired|"
    r"failed to authenticate",
    re.IGNORECASE,
)


def login_fault(said: str) -> HostFault | None:
    """The CLI's own notice that it has no valid login (it prints it without an API status)."""
    if not _LOGIN_TEXT.search(said or ""):
        return None
    return HostFault(f"the Claude CLI is not logged in: {one_line(said, 300)}", advice=LOGIN_ADVICE)


def cli_start_fault(executable: str, exc: OSError) -> HostFault:
    """The CLI could not be started: missing, not executable, or no memory or processes left."""
    return HostFault(
        f"cannot run the Claude CLI {executable!r}: {exc.strerror or exc}",
        advice=f"install it (`make claude-cli`) or set CLAUDE_CLI to its path (tried {executable!r})",
    )


# The signals that kill a CLI mid-call from outside its drain: the OOM killer and kill -9
# (SIGKILL), a crash of the host's memory or the binary (SIGSEGV, SIGBUS). Not SIGTERM, SIGINT or
# SIGHUP: those come with the drain's own stop (systemd stopping the scheduler's cgroup, Ctrl-C),
# which ends the run as stopped, not as a fault of the host.
KILLED_BY_THE_HOST = frozenset({signal.SIGKILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT})


def cli_killed_fault(number: int, pid: int, stderr: str) -> HostFault:
    """The CLI was killed mid-call by a signal not the drain's (the OOM killer, a ``kill -9``)."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return HostFault(
        f"the Claude CLI was killed by {name} mid-call (pid {pid}); stderr: {stderr or '(empty)'}",
        advice="look for the OOM killer (`dmesg`) or whoever killed it; the drain probes again "
        "on its own",
    )
