"""The court fetch: from an inbox folder and from a feed on a real local HTTP server — with a
malformed record, a duplicate and a server error."""

from __future__ import annotations

import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from drains.models import DrainRun, RunMode, RunStatus, Trigger
from halacha.fetch import FetchError, fetch_decisions
from halacha.models import CourtDecision


def rec(n: int, text: str | None = None, **extra) -> dict:
    return {
        "external_id": f"feed-{n}",
        "text": text or f"Decision {n}: we hold that {n} is {n}.",
        **extra,
    }


class Feed:
    """A local HTTP server: path -> (status, content type, body); it counts requests."""

    def __init__(self):
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.requests: list[str] = []
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                feed.requests.append(self.path)
                status, ctype, body = feed.routes.get(
                    self.path, (404, "text/plain", b"no such feed")
                )
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass  # keep test output clean; requests are recorded above

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def feed():
    server = Feed()
    yield server
    server.close()


@pytest.fixture
def inbox(tmp_path):
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def ids():
    return sorted(CourtDecision.objects.values_list("external_id", flat=True))


@pytest.mark.django_db
def test_inbox_files_are_imported_and_moved_aside(inbox):
    (inbox / "a.jsonl").write_text(
        "\n".join([json.dumps(rec(1)), '{"external_id": "feed-2", "text": ', json.dumps(rec(3))])
        + "\n"
    )
    # b.json: an array with a duplicate of feed-1, a new record, and one without text
    (inbox / "b.json").write_text(json.dumps([rec(1), rec(4), {"external_id": "feed-5"}], indent=2))
    (inbox / "c.json").write_text("[{ this is not json")
    (inbox / "single.json").write_text(json.dumps(rec(6), indent=2))  # one record, pretty-printed
    (inbox / "notes.txt").write_text("not a decision file")
    (inbox / ".partial.jsonl").write_text(json.dumps(rec(7)))  # still being written

    report = fetch_decisions(inbox=inbox, feed_url="")

    assert ids() == ["feed-1", "feed-3", "feed-4", "feed-6"]
    assert (report.total.added, report.total.unchanged, report.total.bad) == (4, 1, 2)
    assert sorted(
        p.name for p in (inbox / "imported").iterdir() if not p.name.endswith(".errors")
    ) == [
        "a.jsonl",
        "b.json",
        "single.json",
    ]
    assert (
        (inbox / "imported" / "a.jsonl.errors")
        .read_text()
        .startswith("inbox/a.jsonl:2: not valid JSON")
    )
    assert "inbox/b.json:3:" in (inbox / "imported" / "b.json.errors").read_text()
    assert not (inbox / "imported" / "single.json.errors").exists()
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == ["c.json", "c.json.errors"]
    assert "not valid JSON" in (inbox / "failed" / "c.json.errors").read_text()
    assert sorted(p.name for p in inbox.iterdir()) == [
        ".partial.jsonl",
        "failed",
        "imported",
        "notes.txt",
    ]
    assert (
        report.summary()
        == "3 inbox files imported, 1 failed: 4 added, 0 updated, 1 unchanged, 2 bad"
    )


@pytest.mark.django_db
def test_the_same_file_dropped_again_changes_nothing_and_keeps_both_copies(inbox):
    payload = json.dumps(rec(1)) + "\n"
    (inbox / "day.jsonl").write_text(payload)
    fetch_decisions(inbox=inbox, feed_url="")
    before = list(CourtDecision.objects.values_list("id", "updated_at"))
    (inbox / "day.jsonl").write_text(payload)
    report = fetch_decisions(inbox=inbox, feed_url="")
    assert (report.total.added, report.total.unchanged) == (0, 1)
    assert list(CourtDecision.objects.values_list("id", "updated_at")) == before
    assert len([p for p in (inbox / "imported").iterdir() if p.name.startswith("day.")]) == 2


@pytest.mark.django_db
def test_feed_json_array_with_a_malformed_record_and_a_duplicate(feed, inbox):
    CourtDecision.objects.create(external_id="feed-1", text=rec(1)["text"])
    feed.routes["/decisions"] = (
        200,
        "application/json; charset=utf-8",
        json.dumps(
            [rec(1), rec(2, court="Supreme Court"), {"external_id": 3, "text": "x"}, rec(4)]
        ).encode(),
    )
    report = fetch_decisions(inbox=inbox, feed_url=feed.url("/decisions"))
    assert feed.requests == ["/decisions"]
    assert ids() == ["feed-1", "feed-2", "feed-4"]
    assert (report.feed.added, report.feed.unchanged, report.feed.bad) == (2, 1, 1)
    assert report.feed.errors == [("feed", 3, '"external_id" must be a string, not int')]
    assert CourtDecision.objects.get(external_id="feed-2").court == "Supreme Court"
    # the same feed again: idempotent by external_id
    again = fetch_decisions(inbox=inbox, feed_url=feed.url("/decisions"))
    assert (again.feed.added, again.feed.unchanged, again.feed.bad) == (0, 3, 1)
    assert CourtDecision.objects.count() == 3


@pytest.mark.django_db
def test_feed_jsonl_with_a_broken_line(feed, inbox):
    body = "\n".join([json.dumps(rec(1)), "{broken", json.dumps(rec(2, "טקסט בעברית: נקבע כי"))])
    feed.routes["/feed.jsonl"] = (200, "application/x-ndjson", body.encode("utf-8"))
    report = fetch_decisions(inbox=inbox, feed_url=feed.url("/feed.jsonl"))
    assert (report.feed.added, report.feed.bad) == (2, 1)
    assert report.feed.errors[0][:2] == ("feed", 2)
    assert CourtDecision.objects.get(external_id="feed-2").language == "he"


@pytest.mark.django_db
def test_feed_jsonl_lines_end_at_newline_only(feed, inbox):
    """A record holding U+2028, U+0085 or U+001C unescaped is one line, not three."""
    texts = ["a\u2028b", "c\x85d", "e\x1cf"]
    body = "\r\n".join(json.dumps(rec(n, t), ensure_ascii=False) for n, t in enumerate(texts, 1))
    feed.routes["/odd.jsonl"] = (200, "application/x-ndjson", body.encode("utf-8"))
    report = fetch_decisions(inbox=inbox, feed_url=feed.url("/odd.jsonl"))
    assert (report.feed.lines, report.feed.added, report.feed.bad) == (3, 3, 0)
    assert CourtDecision.objects.get(external_id="feed-2").text == "c\x85d"


@pytest.mark.django_db
def test_feed_server_error_raises_after_the_inbox_is_imported(feed, inbox):
    (inbox / "a.jsonl").write_text(json.dumps(rec(1)) + "\n")
    feed.routes["/decisions"] = (503, "text/plain", b"upstream database is down")
    with pytest.raises(FetchError, match=r"answered HTTP 503 .*: upstream database is down"):
        fetch_decisions(inbox=inbox, feed_url=feed.url("/decisions"))
    assert ids() == ["feed-1"]
    assert (inbox / "imported" / "a.jsonl").exists()


@pytest.mark.django_db
def test_feed_that_is_not_json_raises(feed, inbox):
    feed.routes["/decisions"] = (200, "application/json", b'[{"external_id": ')
    with pytest.raises(FetchError, match="starts like a JSON array but is not valid JSON"):
        fetch_decisions(inbox=inbox, feed_url=feed.url("/decisions"))
    assert CourtDecision.objects.count() == 0


@pytest.mark.django_db
def test_unreachable_feed_raises(inbox):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="could not be reached"):
        fetch_decisions(inbox=inbox, feed_url=f"http://127.0.0.1:{port}/decisions", timeout=5)


@pytest.mark.django_db
def test_command_records_a_job_run_with_counts(feed, inbox, settings):
    (inbox / "a.jsonl").write_text(json.dumps(rec(1)) + "\n{oops\n")
    (inbox / "broken.json").write_text("[nope")
    feed.routes["/decisions"] = (200, "application/json", json.dumps([rec(1), rec(2)]).encode())
    settings.FETCH_INBOX_DIR = inbox
    settings.FETCH_FEED_URL = feed.url("/decisions")
    out, err = io.StringIO(), io.StringIO()
    # as cron does; bad records exit 1, the same rule as import_decisions
    with pytest.raises(CommandError, match="1 bad record.* and 1 file.* moved to failed/") as bad:
        call_command("fetch_decisions", trigger="cron", stdout=out, stderr=err)
    assert bad.value.returncode == 1
    run = DrainRun.objects.get(drain="fetch_decisions")
    assert (run.mode, run.trigger, run.status) == (RunMode.JOB, Trigger.CRON, RunStatus.SUCCEEDED)
    assert run.slot is not None and run.slot.minute == 17  # the fetch's cron slot
    # feed-1 added from the inbox, feed-2 from the feed (feed-1 again is unchanged: not counted)
    assert (run.items_done, run.items_failed) == (2, 2)
    assert "inbox/a.jsonl:2: not valid JSON" in err.getvalue()
    assert "broken.json: FAILED" in out.getvalue()
    assert "Fetched: 1 inbox file imported, 1 failed, feed 2 records" in out.getvalue()


@pytest.mark.django_db
def test_command_records_a_server_error_as_a_failed_run_and_exits_non_zero(feed, inbox, settings):
    (inbox / "a.jsonl").write_text(json.dumps(rec(1)) + "\n")
    feed.routes["/decisions"] = (500, "text/plain", b"internal error")
    settings.FETCH_INBOX_DIR = inbox
    settings.FETCH_FEED_URL = feed.url("/decisions")
    with pytest.raises(CommandError, match="answered HTTP 500"):
        call_command("fetch_decisions", trigger="manual", stdout=io.StringIO())
    run = DrainRun.objects.get(drain="fetch_decisions")
    assert (run.status, run.trigger) == (RunStatus.FAILED, Trigger.MANUAL)
    assert "FetchError: the feed" in run.error and "HTTP 500" in run.error
    assert run.items_done == 1  # the inbox part was imported and counted before the feed failed
    assert run.finished_at is not None
