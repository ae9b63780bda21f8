"""``manage.py import_decisions``: summary, progress, bad lines, --help, concurrent importers."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from halacha.models import CourtDecision, Language
from tests.support.db import ROOT, child_env, manage, popen_manage

SAMPLES = ROOT / "halacha" / "samples"


def _run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_decisions", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_import__summary_and_idempotence(write_jsonl):
    path = write_jsonl("a.jsonl", *({"external_id": f"d{i}", "text": f"text {i}"} for i in range(3)))
    out, err = _run(str(path))
    assert "Imported 1 file, 3 records: 3 added, 0 updated, 0 unchanged, 0 bad." in out
    assert err == ""
    out, _ = _run(str(path))
    assert "0 added, 0 updated, 3 unchanged, 0 bad." in out
    assert CourtDecision.objects.count() == 3


@pytest.mark.django_db
def test_import__progress_lines(write_jsonl):
    path = write_jsonl("p.jsonl", *({"external_id": f"p{i}", "text": "t"} for i in range(5)))
    out, _ = _run(str(path), "--progress-every", "2")
    progress = [line for line in out.splitlines() if line.startswith("...")]
    assert len(progress) == 2
    assert progress[0].startswith("... 2 records (") and "2 added" in progress[0]
    assert progress[1].startswith("... 4 records (")


@pytest.mark.django_db
def test_import__progress_off(write_jsonl):
    path = write_jsonl("q.jsonl", *({"external_id": f"q{i}", "text": "t"} for i in range(5)))
    out, _ = _run(str(path), "--progress-every", "0")
    assert not [line for line in out.splitlines() if line.startswith("...")]
    assert "5 added" in out


@pytest.mark.django_db
def test_import__bad_lines_listed_and_exit_status(write_jsonl):
    path = write_jsonl("bad.jsonl", {"external_id": "good", "text": "t"}, "{oops", {"text": "no id"})
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="2 bad line"):
        call_command("import_decisions", str(path), stdout=out, stderr=err)
    assert f"{path}:2: not valid JSON" in err.getvalue()
    assert f'{path}:3: "external_id" is missing' in err.getvalue()
    assert "1 added, 0 updated, 0 unchanged, 2 bad" in out.getvalue()
    assert list(CourtDecision.objects.values_list("external_id", flat=True)) == ["good"]


@pytest.mark.django_db
def test_import__max_errors_shown(write_jsonl):
    path = write_jsonl("bad.jsonl", *(["{"] * 5))
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_decisions", str(path), "--max-errors-shown", "2", stdout=StringIO(), stderr=err)
    assert err.getvalue().count("not valid JSON") == 2
    assert "... and 3 more bad lines" in err.getvalue()


@pytest.mark.django_db
def test_import__missing_path_is_a_user_error(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        _run(str(tmp_path / "missing.jsonl"))


@pytest.mark.django_db
def test_import__the_sample_set():
    out, _ = _run(str(SAMPLES))
    decisions = CourtDecision.objects.all()
    assert decisions.count() >= 30
    assert decisions.filter(language=Language.HEBREW).count() >= 10
    assert decisions.filter(language=Language.ENGLISH).count() >= 10
    assert ", 0 bad." in out


def test_import__help_explains_the_record_format():
    result = manage("import_decisions", "--help", env=child_env(DJANGO_SETTINGS_MODULE="config.settings"))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for needle in ('"external_id"', "required", "YYYY-MM-DD", '"he" or "en"', "line numbers", "4 MiB"):
        assert needle in text, needle
    # The record layout survives as written (one field per line), not reflowed into a paragraph.
    assert '\n   "court": "Supreme Court",' in text


@pytest.mark.django_db(transaction=True)
def test_import__two_importers_at_once_add_each_record_once(write_jsonl):
    records = [{"external_id": f"c{i}", "text": f"text {i}"} for i in range(40)]
    path = write_jsonl("same.jsonl", *records)
    children = [popen_manage("import_decisions", str(path), "--progress-every", "0") for _ in range(2)]
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (_out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    added = sum(int(out.split("records: ")[1].split(" added")[0]) for out, _ in outputs)
    assert added == 40
    assert CourtDecision.objects.count() == 40
