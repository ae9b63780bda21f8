"""The import property, generated: JSONL inputs of good and bad records mixed (hypothesis), given
to ``import_decisions`` as a file, dropped in the fetch's inbox, and served by the feed from a
local HTTP server. Every good record is imported, every bad one is reported with its line (or
feed position), nothing raises, and both commands exit 1 when anything was bad.

Bad records of every kind the shared validator knows: not JSON, not an object, wrong types,
unknown keys, blank or missing fields, too long, NUL, a lone surrogate once decoded, a date
outside 1800-01-01 .. tomorrow, a duplicate external_id in the same input (the first is kept),
and (files only) bytes that are not UTF-8 — a feed body that is not UTF-8 fails as a whole.
"""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from halacha.models import CourtDecision
from tests.halacha.test_fetch import Feed

pytestmark = pytest.mark.django_db

good_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1, max_size=60,
).filter(str.strip)

BAD_RECORDS = [
    b"{oops",
    b'{"external_id": "x", "text":',
    b"<!DOCTYPE html><html>",
    b"[1, 2]",
    b'"just a string"',
    b"12" * 2200,  # an integer of 4400 digits: Python refuses to read it
    b"[" * 5000 + b"]" * 5000,
    json.dumps({"external_id": 5, "text": "t"}).encode(),
    json.dumps({"external_id": "e", "text": ["t"]}).encode(),
    json.dumps({"external_id": "e", "text": "t", "colour": "red"}).encode(),
    json.dumps({"external_id": " ", "text": "t"}).encode(),
    json.dumps({"text": "no id"}).encode(),
    json.dumps({"external_id": "e", "text": "   "}).encode(),
    json.dumps({"external_id": "e" * 201, "text": "t"}).encode(),
    json.dumps({"external_id": "e", "text": "a\x00b"}).encode(),
    b'{"external_id": "e", "text": "lone \\ud800 surrogate"}',
    b'{"external_id": "e\\udfff", "text": "t"}',
    json.dumps({"external_id": "e", "text": "t", "decided_on": "9999-12-31"}).encode(),
    json.dumps({"external_id": "e", "text": "t", "decided_on": "0001-01-01"}).encode(),
    json.dumps({"external_id": "e", "text": "t", "decided_on": "2024-02-30"}).encode(),
    json.dumps({"external_id": "e", "text": "t", "decided_on": 20240301}).encode(),
    json.dumps({"external_id": "e", "text": "t", "language": "fr"}).encode(),
    json.dumps({"external_id": "e", "text": "t", "url": "file:///etc/passwd"}).encode(),
    json.dumps({"external_id": "e\n2", "text": "t"}).encode(),
]
NOT_UTF8 = [b"\xff\xfe{}", b'{"external_id": "e", "text": "caf\xe9"}']


def line_specs(*, raw_bytes: bool):
    bad = st.sampled_from(BAD_RECORDS + (NOT_UTF8 if raw_bytes else []))
    good = st.builds(lambda text, date: ("good", text, date), good_text,
                     st.sampled_from([None, "1800-01-01", "2024-03-01", "1999-12-31"]))
    spec = st.one_of(good, bad.map(lambda b: ("bad", b)), st.just(("duplicate",)))
    return st.lists(spec, min_size=1, max_size=25).map(lambda specs: [good_first(), *specs])


def good_first():
    return ("good", "The first decision.", None)


def build(specs) -> tuple[bytes, dict[int, tuple[str, str]], set[int]]:
    """The payload, the good lines (line -> (external_id, text)) and the bad line numbers."""
    prefix = uuid.uuid4().hex[:8]
    lines, good, bad = [], {}, set()
    for number, spec in enumerate(specs, 1):
        if spec[0] == "good":
            external_id = f"{prefix}-{number}"
            record = {"external_id": external_id, "text": spec[1]}
            if spec[2]:
                record["decided_on"] = spec[2]
            lines.append(json.dumps(record, ensure_ascii=number % 2 == 0).encode())
            good[number] = (external_id, spec[1])
        elif spec[0] == "duplicate":
            first = next(iter(good))
            lines.append(json.dumps({"external_id": good[first][0], "text": "another"}).encode())
            bad.add(number)
        else:
            lines.append(spec[1])
            bad.add(number)
    return b"\n".join(lines) + b"\n", good, bad


def reported_lines(stderr: str, source: str) -> set[int]:
    return {int(n) for n in re.findall(rf"^{re.escape(source)}:(\d+): ", stderr, re.M)}


def run(*args, bad: set[int]) -> str:
    """Run a command; it exits 1 (the same rule for both) exactly when a record was bad."""
    err = io.StringIO()
    status = 0
    try:
        call_command(*args, stdout=io.StringIO(), stderr=err)
    except CommandError as exc:
        status = exc.returncode
        assert re.search("bad (line|record)", str(exc)), str(exc)
    assert status == (1 if bad else 0), err.getvalue()
    assert "Traceback" not in err.getvalue()
    return err.getvalue()


def assert_imported(good: dict[int, tuple[str, str]]) -> None:
    stored = dict(
        CourtDecision.objects.filter(external_id__in=[g[0] for g in good.values()])
        .values_list("external_id", "text")
    )
    assert stored == dict(good.values())


HSET = hsettings(max_examples=25, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))


@HSET
@given(line_specs(raw_bytes=True))
def test_import_decisions__file(tmp_path_factory, specs):
    payload, good, bad = build(specs)
    path = tmp_path_factory.mktemp("sweep") / "input.jsonl"
    path.write_bytes(payload)
    err = run("import_decisions", str(path), "--max-errors-shown", "1000", bad=bad)
    assert reported_lines(err, str(path)) == bad
    assert_imported(good)


@HSET
@given(line_specs(raw_bytes=True))
def test_fetch_decisions__inbox(tmp_path_factory, settings, specs):
    payload, good, bad = build(specs)
    inbox = tmp_path_factory.mktemp("inbox")
    (inbox / "drop.jsonl").write_bytes(payload)
    settings.FETCH_INBOX_DIR = inbox
    settings.FETCH_FEED_URL = None
    err = run("fetch_decisions", bad=bad)  # the same rule as import_decisions
    assert reported_lines(err, "inbox/drop.jsonl") == bad
    assert (inbox / "imported" / "drop.jsonl").exists()
    assert_imported(good)


@pytest.fixture(scope="module")
def feed_server():
    server = Feed()
    yield server
    server.close()


@HSET
@given(line_specs(raw_bytes=False), st.sampled_from(["jsonl", "array"]))
def test_fetch_decisions__feed(tmp_path_factory, settings, feed_server, specs, shape):
    payload, good, bad = build(specs)
    if shape == "array":
        # A JSON array numbers its records by position; lines that are no JSON cannot be in it.
        specs = [s for s in specs if not (s[0] == "bad" and not _json(s[1]))]
        payload, good, bad = build(specs)
        body = b"[" + b",".join(payload.splitlines()) + b"]"
    else:
        body = payload
    feed_server.routes["/feed"] = (200, "application/json; charset=utf-8", body)
    settings.FETCH_INBOX_DIR = tmp_path_factory.mktemp("empty-inbox")
    settings.FETCH_FEED_URL = feed_server.url("/feed")
    err = run("fetch_decisions", bad=bad)
    assert reported_lines(err, "feed") == bad
    assert_imported(good)


def _json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def test_a_feed_that_answers_html_fails_its_run(settings, feed_server, tmp_path):
    from drains.models import DrainRun, RunStatus

    page = b"<!DOCTYPE html>\n<html><body>\n" + b"<p>Sign in</p>\n" * 73 + b"</body></html>\n"
    feed_server.routes["/login"] = (200, "text/html", page)
    settings.FETCH_INBOX_DIR = tmp_path
    settings.FETCH_FEED_URL = feed_server.url("/login")
    with pytest.raises(CommandError, match="did not answer JSON") as failed:
        call_command("fetch_decisions", stdout=io.StringIO(), stderr=io.StringIO())
    assert failed.value.returncode == 1
    assert DrainRun.objects.get(drain="fetch_decisions").status == RunStatus.FAILED
    assert not CourtDecision.objects.exists()


def test_a_truncated_file_in_the_inbox_goes_to_failed(settings, tmp_path):
    (tmp_path / "cut.jsonl").write_text('{"a":')
    settings.FETCH_INBOX_DIR = tmp_path
    settings.FETCH_FEED_URL = None
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 file.* moved to failed/"):
        call_command("fetch_decisions", stdout=out, stderr=io.StringIO())
    assert (tmp_path / "failed" / "cut.jsonl").exists()
    assert not (tmp_path / "imported").exists()
    assert "cut.jsonl: FAILED (inbox/cut.jsonl: not one of its 1 line(s) is JSON" in out.getvalue()
