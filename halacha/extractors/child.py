"""A child process that dies with the drain that started it (Linux ``PR_SET_PDEATHSIG``).

``kill -9`` of a drain must never leave an extractor call running that nobody will collect (it
would be paid for and thrown away). ``die_with_parent()`` returns a ``preexec_fn`` that, in the
child between fork and exec, asks the kernel for SIGKILL when the parent goes, then closes the
race after fork: a parent that died before the request was made is no longer the child's parent
(the child was reparented), so the child checks ``getppid()`` against the pid recorded before the
fork and kills itself. The death signal follows the *thread* that forked: the runner's workers
live for the whole run, and a call holds its thread until it returns.

Elsewhere than Linux it returns None (no such signal; the process group and the supervisor's
kill still apply).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0 or os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec
