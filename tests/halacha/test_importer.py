"""The import service: validation, upsert, changed text, bad lines with line numbers."""

from __future__ import annotations

import datetime as dt

import pytest

from halacha.importer import (
    MAX_RECORD_BYTES,
    ImportPathError,
    RecordError,
    import_lines,
    import_paths,
    import_record,
    text_digest,
    validate_record,
)
from halacha.models import CourtDecision, Halacha
from tests.support.items import set_state, state

GOOD = {
    "external_id": "sc-1",
    "court": "Supreme Court",
    "case_number": "CA 1/24",
    "decided_on": "2024-03-01",
    "title": "Levi v. Cohen",
    "text": "We hold that silence is not acceptance.",
    "language": "en",
    "url": "https://example.org/sc-1",
}


def _rows() -> list[tuple]:
    return list(
        CourtDecision.objects.order_by("external_id").values_list(
            "external_id", "text", "title", "updated_at"
        )
    )


# --- validate_record -------------------------------------------------------------------------


def test_validate_record__clean_fields():
    clean = validate_record(dict(GOOD, title="  Levi v. Cohen  "))
    assert clean == dict(GOOD, decided_on=dt.date(2024, 3, 1), title="Levi v. Cohen")


def test_validate_record__only_given_optional_fields():
    assert validate_record({"external_id": " x ", "text": "t"}) == {"external_id": "x", "text": "t"}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([], "must be a JSON object, not list"),
        ({"text": "t"}, '"external_id" is missing'),
        ({"external_id": "x"}, '"text" is missing'),
        ({"external_id": "  ", "text": "t"}, '"external_id" is blank'),
        ({"external_id": "x", "text": " \n "}, '"text" is blank'),
        ({"external_id": 7, "text": "t"}, '"external_id" must be a string, not int'),
        ({"external_id": "x" * 201, "text": "t"}, "the limit is 200"),
        ({"external_id": "x", "text": "t", "decided_on": "2024-02-30"}, "is not a real date"),
        ({"external_id": "x", "text": "t", "decided_on": "01/03/2024"}, "YYYY-MM-DD"),
        ({"external_id": "x", "text": "t", "decided_on": 20240301}, "YYYY-MM-DD"),
        ({"external_id": "x", "text": "t", "language": "fr"}, '"he" or "en"'),
        ({"external_id": "x", "text": "t", "url": "ftp://example.org/a"}, "not an http(s) URL"),
        ({"external_id": "x", "text": "a\x00b"}, "NUL"),
        ({"external_id": "x", "text": "t", "judge": "A"}, "unknown field(s) 'judge'"),
    ],
)
def test_validate_record__refusals(record, message):
    with pytest.raises(RecordError) as info:
        validate_record(record)
    assert message in str(info.value)


# --- import_record ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_record__added_then_unchanged():
    assert import_record(validate_record(GOOD)) == "added"
    before = _rows()
    assert import_record(validate_record(GOOD)) == "unchanged"
    assert _rows() == before  # not even updated_at moved
    decision = CourtDecision.objects.get()
    assert decision.text_sha256 == text_digest(GOOD["text"])
    assert decision.decided_on == dt.date(2024, 3, 1)


@pytest.mark.django_db
def test_import_record__language_guessed_on_create():
    import_record(validate_record({"external_id": "he-1", "text": "נקבע כי שתיקה אינה הסכמה."}))
    import_record(validate_record({"external_id": "en-1", "text": "Silence is not acceptance."}))
    assert dict(CourtDecision.objects.values_list("external_id", "language")) == {
        "he-1": "he",
        "en-1": "en",
    }


@pytest.mark.django_db
def test_import_record__other_field_changed_keeps_extraction(make_decision):
    import_record(validate_record(GOOD))
    decision = CourtDecision.objects.get()
    set_state("halacha", [decision], "done", attempts=1)
    Halacha.objects.create(decision=decision, ordinal=1, rule="r", quote="q", extractor="offline")

    assert import_record(validate_record(dict(GOOD, title="Levi v. Cohen (corrected)"))) == "updated"
    decision.refresh_from_db()
    assert decision.title == "Levi v. Cohen (corrected)"
    assert state("halacha", decision) == ("done", 1, "")
    assert decision.halachot.count() == 1


@pytest.mark.django_db
def test_import_record__changed_text_resets_extraction_and_drops_halachot():
    import_record(validate_record(GOOD))
    decision = CourtDecision.objects.get()
    set_state("halacha", [decision], "failed", attempts=3, last_error="boom")
    set_state("metadata", [decision], "done")
    CourtDecision.objects.filter(pk=decision.pk).update(judges=["Justice A"])
    Halacha.objects.create(decision=decision, ordinal=1, rule="r", quote="q", extractor="offline")

    new_text = "We hold that silence may be acceptance where the parties so agreed."
    assert import_record(validate_record(dict(GOOD, text=new_text))) == "updated"
    decision.refresh_from_db()
    assert decision.text == new_text
    assert decision.text_sha256 == text_digest(new_text)
    assert state("halacha", decision) == ("pending", 0, "")
    assert (state("metadata", decision)[0], decision.judges) == ("pending", [])
    assert not Halacha.objects.filter(decision=decision).exists()


@pytest.mark.django_db
def test_import_record__left_out_key_keeps_stored_value():
    import_record(validate_record(GOOD))
    assert import_record(validate_record({"external_id": "sc-1", "text": GOOD["text"]})) == "unchanged"
    assert CourtDecision.objects.get().court == "Supreme Court"


# --- import_lines / import_paths -------------------------------------------------------------


@pytest.mark.django_db
def test_import_lines__duplicates_in_one_file():
    report = import_lines(
        [
            '{"external_id": "a", "text": "one"}',
            '{"external_id": "a", "text": "one"}',
            '{"external_id": "a", "text": "two"}',
        ],
        "mem",
    )
    # The first is kept; the later two are reported with the line of the first, not
    # silently counted as "1 unchanged, 1 updated".
    assert (report.added, report.unchanged, report.updated, report.bad) == (1, 0, 0, 2)
    assert CourtDecision.objects.get().text == "one"
    assert [(line, message.split(";")[0]) for _, line, message in report.errors] == [
        (2, '"external_id" \'a\' already came on line 1'),
        (3, '"external_id" \'a\' already came on line 1'),
    ]


@pytest.mark.django_db
def test_import_paths__malformed_file(write_jsonl):
    path = write_jsonl(
        "broken.jsonl",
        {"external_id": "ok-1", "text": "We hold that a good line is imported."},
        '{"external_id": "bad-json", "text": "unterminated}',
        "",
        {"external_id": "no-text"},
        {"external_id": "bad-date", "text": "t", "decided_on": "2024-13-01"},
        '"just a string"',
        {"external_id": "ok-2", "text": "The rule is that the last good line counts too."},
    )
    report = import_paths([path])
    assert (report.added, report.updated, report.unchanged, report.bad) == (2, 0, 0, 4)
    assert [(line, msg.split(":")[0]) for _, line, msg in report.errors] == [
        (2, "not valid JSON"),
        (4, '"text" is missing; every record needs it'),
        (5, '"decided_on" \'2024-13-01\' is not a real date'),
        (6, "a record must be a JSON object, not str"),
    ]
    assert all(source == str(path) for source, _, _ in report.errors)
    assert set(CourtDecision.objects.values_list("external_id", flat=True)) == {"ok-1", "ok-2"}


@pytest.mark.django_db
def test_import_paths__bad_lines_leave_database_unchanged(write_jsonl):
    import_record(validate_record(GOOD))
    before = _rows()
    path = write_jsonl(
        "only-bad.jsonl",
        # same external id, changed text, but invalid elsewhere: must not touch the stored row
        dict(GOOD, text="changed", decided_on="yesterday"),
        dict(GOOD, text="changed", language="de"),
        '{"external_id": "sc-1", "text": ',
    )
    report = import_paths([path])
    assert report.bad == 3 and report.good == 0
    assert _rows() == before


@pytest.mark.django_db
def test_import_paths__five_megabyte_line_is_refused_unread(write_jsonl):
    huge = '{"external_id": "huge", "text": "' + "x" * (5 * 1024 * 1024) + '"}'
    path = write_jsonl("huge.jsonl", GOOD, huge, dict(GOOD, external_id="sc-2"))
    report = import_paths([path])
    assert (report.added, report.bad) == (2, 1)
    (source, line, message) = report.errors[0]
    assert line == 2 and "5.0 MiB" in message and "limit is 4 MiB" in message
    assert not CourtDecision.objects.filter(external_id="huge").exists()


@pytest.mark.django_db
def test_import_lines__five_megabyte_line_from_memory():
    huge = '{"external_id": "huge", "text": "' + "x" * (5 * 1024 * 1024) + '"}'
    report = import_lines([huge], "fetch")
    assert report.bad == 1 and report.errors[0][:2] == ("fetch", 1)
    assert "limit is 4 MiB" in report.errors[0][2]


@pytest.mark.django_db
def test_import_paths__line_at_the_limit_is_accepted(tmp_path):
    prefix, suffix = '{"external_id": "edge", "text": "', '"}'
    filler = "y" * (MAX_RECORD_BYTES - len(prefix) - len(suffix))
    path = tmp_path / "edge.jsonl"
    path.write_bytes((prefix + filler + suffix + "\n").encode())
    assert import_paths([path]).added == 1


@pytest.mark.django_db
def test_import_paths__not_utf8_and_bom(tmp_path):
    path = tmp_path / "enc.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"external_id": "bom", "text": "first line has a BOM"}\n'
        b'{"external_id": "latin1", "text": "caf\xe9"}\n'
    )
    report = import_paths([path])
    assert report.added == 1
    assert report.errors == [(str(path), 2, "not UTF-8: byte 39 of the line")]


@pytest.mark.django_db
def test_import_paths__folder_recursive_and_sorted(write_jsonl):
    write_jsonl("dir/b.jsonl", {"external_id": "b", "text": "b"})
    first = write_jsonl("dir/a.jsonl", {"external_id": "a", "text": "a"})
    write_jsonl("dir/sub/c.jsonl", {"external_id": "c", "text": "c"})
    (first.parent / "notes.txt").write_text("not imported")
    report = import_paths([first.parent])
    assert (report.files, report.added) == (3, 3)
    assert list(CourtDecision.objects.order_by("id").values_list("external_id", flat=True)) == [
        "a",
        "b",
        "c",
    ]


def test_import_paths__missing_path(tmp_path):
    with pytest.raises(ImportPathError, match="does not exist"):
        import_paths([tmp_path / "nope.jsonl"])
    with pytest.raises(ImportPathError, match="no \\*.jsonl files"):
        import_paths([tmp_path])


@pytest.mark.django_db
def test_import_lines__progress_callback():
    seen = []
    lines = [f'{{"external_id": "p{i}", "text": "t"}}' for i in range(7)]
    import_lines(lines, "mem", progress=lambda r, s: seen.append((r.lines, r.added, s)), progress_every=3)
    assert seen == [(3, 3, "mem"), (6, 6, "mem")]


@pytest.mark.django_db(transaction=True)
def test_import_lines__deadlock_with_another_writer_is_retried_record_by_record():
    """A batch that deadlocks is redone one record at a time: nothing lost, nothing doubled."""
    import threading
    import time

    from django.db import connection

    from tests.support.db import admin_connect

    for external_id in ("x", "y"):
        import_record(validate_record({"external_id": external_id, "text": "old"}))
    other = admin_connect(connection.settings_dict["NAME"])
    other.autocommit = False
    # The importer's session checks for deadlocks after the default 1 s; this one waits 10 s, so
    # the importer is the one PostgreSQL picks to fail, every time.
    other.execute("SET deadlock_timeout = '10s'")
    other.execute("SELECT 1 FROM halacha_courtdecision WHERE external_id = 'y' FOR UPDATE")

    result = {}

    def run():
        try:
            # The batch locks its rows in external_id order: x, then y (held by the other
            # writer), where it waits.
            result["report"] = import_lines(
                ['{"external_id": "y", "text": "new y"}', '{"external_id": "x", "text": "new x"}'],
                "race",
            )
        finally:
            connection.close()

    importer = threading.Thread(target=run)
    importer.start()
    deadline = time.monotonic() + 10
    with admin_connect(connection.settings_dict["NAME"]) as watcher:  # autocommit: fresh stats
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone()[0]
            if waiting:
                break
            time.sleep(0.02)
    assert waiting, "the importer never waited for the row the other writer holds"
    # Now take x, which the importer holds: a deadlock, which the importer loses.
    other.execute("UPDATE halacha_courtdecision SET title = 'touched' WHERE external_id = 'x'")
    other.commit()
    other.close()
    importer.join(timeout=30)

    report = result["report"]
    assert (report.updated, report.bad, report.added) == (2, 0, 0)
    rows = dict(CourtDecision.objects.values_list("external_id", "text"))
    assert rows == {"x": "new x", "y": "new y"}
    assert CourtDecision.objects.get(external_id="x").title == "touched"
