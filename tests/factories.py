"""Small factories the tests share: court decisions and drain runs with sensible defaults, and
the environment of a child process that runs a drain with a test extractor."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from django.utils import timezone

from drains.models import DrainRun, RunStatus
from halacha.models import CourtDecision
from tests.support.db import child_env
from tests.support.items import sync_all

# One halacha per decision by the offline rule (its cue "We hold that"), quoting the first sentence.
HOLDS = "We hold that decision {i} binds. Rule {i} applies.{mark}"


def make_decisions(
    n: int,
    *,
    start: int = 1,
    prefix: str = "d",
    text: str = HOLDS,
    marks: Mapping[int, str] | None = None,
) -> list[CourtDecision]:
    """``n`` pending decisions ``<prefix>-0001``…, each text ``text`` formatted with its number
    ``{i}`` and ``{mark}`` (``marks[i]``, e.g. a phrase a test extractor reacts to, or "")."""
    marks = marks or {}
    made = CourtDecision.objects.bulk_create(
        [
            CourtDecision(
                external_id=f"{prefix}-{i:04d}", text=text.format(i=i, mark=marks.get(i, ""))
            )
            for i in range(start, start + n)
        ]
    )
    sync_all()  # every drain's items, as a save would have queued them
    return made


def make_run(drain: str = "halacha", *, started_at=None, checkpoint=None, **fields) -> DrainRun:
    """A DrainRun, by default running on this host (pid 999999) since now."""
    values = {
        "host": socket.gethostname(),
        "pid": 999_999,
        "started_at": started_at or timezone.now(),
        "last_checkpoint_at": checkpoint,
        "status": RunStatus.RUNNING,
        **fields,
    }
    return DrainRun.objects.create(drain=drain, **values)


def extractor_env(call_log, extractor: str, **extra: str) -> dict[str, str]:
    """A child ``manage.py``'s environment: the test extractor ``extractor``
    (tests/support/extractors.py) appending its calls to ``call_log``, plus ``extra``."""
    return child_env(
        HALACHA_EXTRACTOR=f"tests.support.extractors:{extractor}",
        TEST_EXTRACTOR_CALL_LOG=str(call_log),
        **extra,
    )
