from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.utils import timezone
from freezegun import freeze_time
from rest_framework.test import APIClient

from drains import registry
from drains.models import DrainRun
from drains.runner import Drain
from halacha.drain import HalachaDrain
from halacha.models import CourtDecision
from operations.models import ApiToken
from tests.support.items import copy_items, set_state, sync_all
from tests.support.users import make_user

JERUSALEM = ZoneInfo("Asia/Jerusalem")
# A Wednesday morning in winter (UTC+2): the week boundary is Sat 2026-12-05 18:00+02:00.
WEDNESDAY = datetime(2026, 12, 2, 10, 0, tzinfo=JERUSALEM)
BOUNDARY = datetime(2026, 12, 5, 18, 0, tzinfo=JERUSALEM)


@pytest.fixture
def frozen():
    with freeze_time(WEDNESDAY) as clock:
        yield clock


def _user(django_user_model, username, *, staff, perms=()):
    user = make_user(django_user_model, username, "pw-" + username, is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename,
                                                         content_type__app_label="drains"))
    return user


@pytest.fixture
def operator(db, django_user_model):
    """Staff with both drains permissions: what an operator has."""
    return _user(django_user_model, "olga", staff=True,
                 perms=["view_draincontrol", "change_draincontrol"])


@pytest.fixture
def viewer(db, django_user_model):
    return _user(django_user_model, "vera", staff=True, perms=["view_draincontrol"])


@pytest.fixture
def staff_without_perm(db, django_user_model):
    return _user(django_user_model, "sam", staff=True)


@pytest.fixture
def non_staff(db, django_user_model):
    # Has the permissions but is not staff: fine for the API (scripts), not for the page.
    return _user(django_user_model, "nick", staff=False,
                 perms=["view_draincontrol", "change_draincontrol"])


@pytest.fixture
def plain_user(db, django_user_model):
    return _user(django_user_model, "pat", staff=False)


@pytest.fixture
def script_user(db, django_user_model):
    """A non-staff service account reaching the API with a token."""
    return _user(django_user_model, "cronbot", staff=False,
                 perms=["view_draincontrol", "change_draincontrol"])


@pytest.fixture
def token(script_user):
    return ApiToken.objects.create(user=script_user, expiry=timedelta(days=365), name="tests")[1]


@pytest.fixture
def api(operator):
    # The API's throttles count in the cache (the database cache table, which no test's flush
    # empties): start each test from an empty one, so that what earlier tests and servers left
    # there (past the cache's max_entries, a cull query per write) changes no count here.
    cache.clear()
    client = APIClient()
    client.force_login(operator)
    return client


_run_ids = itertools.count(1)


@pytest.fixture
def make_run(db):
    def make(drain="halacha", **fields) -> DrainRun:
        now = timezone.now()
        defaults = {
            "drain": drain,
            "host": "host-a",
            "pid": 4000 + next(_run_ids),
            "started_at": now - timedelta(minutes=30),
            "status": "succeeded",
        }
        defaults.update(fields)
        # A run of the extractor configured now, unless the test says otherwise (the
        # projection measures only those).
        if drain in registry.names():
            defaults.setdefault("extractor", registry.get(drain).extractor_label())
        if defaults["status"] != "running":
            defaults.setdefault("finished_at", defaults["started_at"] + timedelta(minutes=10))
        return DrainRun.objects.create(**defaults)

    return make


@pytest.fixture
def decisions(db):
    """``decisions(pending=.., done=.., failed=..)`` creates that many decisions."""
    counter = itertools.count(1)

    def make(pending=0, done=0, failed=0):
        rows = {}
        for status, n in (("pending", pending), ("done", done), ("failed", failed)):
            rows[status] = [CourtDecision(external_id=f"d-{status}-{next(counter)}", text="text")
                            for _ in range(n)]
            for row in rows[status]:
                row.text_sha256 = f"{row.external_id:0>64}"
        CourtDecision.objects.bulk_create([row for made in rows.values() for row in made])
        sync_all()
        set_state("halacha", rows["done"], "done")
        set_state("halacha", rows["failed"], "failed", attempts=3, last_error="boom")

    return make


class _FakeDrain(Drain):
    """A small drain for tests and benches: its items are the decisions, like halacha's."""

    source = HalachaDrain.source


@pytest.fixture
def extra_drains():
    """Register ``n`` more drains (named x00, x01, ...) for the test; removed afterwards."""
    added = []

    def register(n: int) -> list[str]:
        for i in range(len(added), len(added) + n):
            cls = type(f"Drain{i}", (_FakeDrain,), {"name": f"x{i:02d}"})
            registry.register(cls)
            copy_items("halacha", cls.name)  # the same backlog as halacha's
            added.append(cls.name)
        return list(added)

    yield register
    for name in added:
        registry.unregister(name)
