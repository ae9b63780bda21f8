"""The metadata drain on the shared runtime: every sample decision's court, case number, date,
judges and parties filled by the offline rules; a re-run changes nothing."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from drains.models import DrainRun, Item, RunStatus, StagedResult
from drains.staging import promote_staged, stage_result
from halacha.extractors.base import ExtractionError
from halacha.extractors.offline import OfflineExtractor
from halacha.extractors.prompts import METADATA_SYSTEM_PROMPT
from halacha.importer import import_lines
from halacha.models import CourtDecision
from tests.support.db import ROOT, manage
from tests.support.items import state, statuses

SAMPLES = ROOT / "halacha" / "samples"
EXPECTED = json.loads((SAMPLES / "expected_offline.json").read_text())
HEADER_FIELDS = ("court", "case_number", "decided_on")

pytestmark = pytest.mark.django_db(transaction=True)  # the runtime commits as it goes


def import_samples(*, keep_header_fields: bool) -> int:
    lines = []
    for path in sorted(SAMPLES.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if not keep_header_fields:
                for field in HEADER_FIELDS:
                    record.pop(field, None)
            lines.append(json.dumps(record, ensure_ascii=False))
    return import_lines(lines, "samples").added


def metadata(decision: CourtDecision) -> dict:
    return {
        "court": decision.court,
        "case_number": decision.case_number,
        "decided_on": decision.decided_on.isoformat() if decision.decided_on else None,
        "judges": decision.judges,
        "parties": decision.parties,
    }


def drain(*args: str) -> str:
    out = io.StringIO()
    call_command("drain_metadata", "--trigger", "manual", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_drain_metadata_fills_every_sample_from_the_text():
    assert import_samples(keep_header_fields=False) == len(EXPECTED) == 33
    assert set(CourtDecision.objects.values_list("court", flat=True)) == {""}

    drain("--max-items", "100")

    decisions = list(CourtDecision.objects.all())
    assert {d.external_id: metadata(d) for d in decisions} == {
        key: value["metadata"] for key, value in EXPECTED.items()
    }
    assert statuses("metadata") == ["done"] * 33
    assert not Item.objects.filter(drain="metadata", done_at__isnull=True).exists()
    # the other drain's work is untouched: no halacha was extracted on the way
    assert statuses("halacha") == ["pending"] * 33
    run = DrainRun.objects.get(drain="metadata")
    assert (run.status, run.items_done, run.items_failed) == (RunStatus.SUCCEEDED, 33, 0)


def test_a_rerun_is_idempotent():
    import_samples(keep_header_fields=False)
    drain("--max-items", "100")
    before = {d.pk: (metadata(d), d.updated_at) for d in CourtDecision.objects.all()}

    drain("--max-items", "100")

    assert {d.pk: (metadata(d), d.updated_at) for d in CourtDecision.objects.all()} == before
    second = DrainRun.objects.filter(drain="metadata").order_by("-started_at", "-id").first()
    assert second.items_done == 0
    # a leftover staged result for a done decision is promoted as a no-op and cleared
    decision = CourtDecision.objects.first()
    key = str(decision.pk)
    assert stage_result(drain="metadata", item_key=key, payload={"court": "Other", "judges": ["X"]})
    assert promote_staged(drain="metadata", item_key=key) is False
    assert not StagedResult.objects.filter(drain="metadata").exists()
    decision.refresh_from_db()
    assert metadata(decision) == before[decision.pk][0]


def test_imported_header_fields_are_kept_and_blanks_filled():
    record = {
        "external_id": "kept-1",
        "court": "Haifa Magistrates Court",
        "text": "Supreme Court\nCase No. CA 99/24\nBefore: Justice Yael Katz\n"
        "Appellant: A. Levi\nRespondent: B. Cohen\nDecided: 2 May 2024\n\nWe hold nothing.",
    }
    import_lines([json.dumps(record)], "test")
    drain()
    decision = CourtDecision.objects.get(external_id="kept-1")
    assert metadata(decision) == {
        "court": "Haifa Magistrates Court",  # from the source, not overwritten by the text
        "case_number": "CA 99/24",
        "decided_on": "2024-05-02",
        "judges": ["Yael Katz"],
        "parties": ["A. Levi", "B. Cohen"],
    }


def test_drain_metadata_as_cron_runs_it(transactional_db):
    """A child process, as the crontab line or run_scheduler starts it: ``--trigger cron``."""
    import_samples(keep_header_fields=True)
    result = manage("drain_metadata", "--trigger=cron", timeout=120)
    assert result.returncode == 0, result.stderr
    run = DrainRun.objects.get(drain="metadata")
    assert (run.trigger, run.status) == ("cron", RunStatus.SUCCEEDED)
    assert run.items_done == 33  # the default batch cap (DRAINS_DEFAULT_MAX_ITEMS=50) covers them
    assert set(statuses("metadata")) <= {"done"}


class UnreadableMetadata(OfflineExtractor):
    """Offline halachot, but every metadata reply is unusable (a paid call gone wrong)."""

    def call(self, request):
        if request.system == METADATA_SYSTEM_PROMPT:
            raise ExtractionError("the reply was not JSON", raw="<html>",
                                  usage={"input_tokens": 7})
        return super().call(request)


def test_an_unusable_reply_is_counted_and_fails_the_decision_after_max_attempts(settings):
    settings.HALACHA_EXTRACTOR = f"{__name__}:UnreadableMetadata"
    settings.DRAINS_MAX_ATTEMPTS = 2
    import_lines([json.dumps({"external_id": "x-1", "text": "Court\nWe hold."})], "test")
    with pytest.raises(CommandError, match="every item failed"):  # its only item failed
        drain()
    decision = CourtDecision.objects.get(external_id="x-1")
    assert state("metadata", decision) == ("pending", 1, "the reply was not JSON")
    with pytest.raises(CommandError):
        drain()
    assert state("metadata", decision)[:2] == ("failed", 2)
    runs = DrainRun.objects.filter(drain="metadata").order_by("id")
    assert [(r.status, r.items_failed) for r in runs] == [("failed", 1), ("failed", 1)]
    assert runs[0].error_kind == "extractor"
    assert runs[0].input_tokens == 7  # the paid call's usage is kept
    assert state("halacha", decision) == ("pending", 0, "")  # the halacha drain's is its own
