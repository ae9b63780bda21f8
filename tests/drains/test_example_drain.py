"""The worked example of docs/architecture.md "Adding a drain": a word-count drain that exists
only here. This module is all it takes: the drain (its source, its call, its promotion), the
table it writes (a test-only model, created by the fixture), and the journey through the
framework: a run, the snapshot, a burst, the supervisor, a failed item and its retry."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import TypedDict

import pytest
from django.core.management import call_command
from django.db import connection, models
from django.test.utils import isolate_apps

from drains import registry
from drains.bursts import DEFAULT_DEADLINE, set_drain_burst
from drains.checks import check_schedule
from drains.models import DrainRun, Item
from drains.retries import retry_failed_items
from drains.runner import Drain, ItemFailed, Processed, Source, run_drain
from drains.supervisor import actions
from drains.supervisor.tick import supervise
from halacha.extractors import get_extractor
from halacha.extractors.base import Extractor, ModelCall
from halacha.models import CourtDecision
from operations.selectors import snapshot

# --- the drain: everything a new drain is ---------------------------------------------------------


with isolate_apps("halacha"):  # a model of the test suite only: no migration looks for it

    class WordCount(models.Model):
        """The drain's product: one row per decision it counted."""

        decision_id = models.BigIntegerField(unique=True)
        words = models.IntegerField()

        class Meta:
            app_label = "halacha"
            db_table = "example_wordcount"  # created by the fixture

        def __str__(self) -> str:
            return f"{self.decision_id}: {self.words} words"


SCHEMA = {"type": "object", "properties": {"words": {"type": "integer"}}, "required": ["words"]}


class Counted(TypedDict):
    """Its payload: what a call staged, and what ``promote`` writes."""

    words: int


class WordCountDrain(Drain[CourtDecision, Counted, Extractor]):  # its item, payload, backend
    name = "word_count"
    schedule = "45 * * * *"  # its cron slot: CRONJOBS, the page and run_scheduler read it here
    source = Source(CourtDecision, version_field="text_sha256", label_field="external_id")
    product_names = ("word count", "word counts")

    def make_extractor(self) -> Extractor:
        return get_extractor()  # HALACHA_EXTRACTOR: offline, anthropic, claude-cli or a class

    def process(self, decision: CourtDecision) -> Processed[Counted]:
        reply = self.extractor.call(ModelCall(
            system="Count the words of the decision. Answer as JSON.",
            user=decision.text, schema=SCHEMA, item=decision,
            # Offline, the rule itself (a decision marked UNCOUNTABLE gets no JSON back).
            offline=lambda: ("no idea" if "UNCOUNTABLE" in decision.text
                             else json.dumps({"words": len(decision.text.split())})),
        ))
        try:
            words = int(json.loads(reply.text)["words"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ItemFailed(f"the reply has no word count: {reply.text[:80]!r}",
                             raw=reply.raw, usage=reply.usage) from exc
        return Processed(payload=Counted(words=words), usage=reply.usage, quota=reply.quota)

    @classmethod
    def promote(cls, item_key: str, payload: Counted) -> None:
        # An item worked again (its text changed) replaces what its earlier version wrote.
        WordCount.objects.update_or_create(decision_id=int(item_key),
                                           defaults={"words": payload["words"]})

    @classmethod
    def produced_between(cls, since: datetime, until: datetime) -> int:
        return cls.done_between(since, until)


# --- the journey ----------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def word_count(settings):
    settings.HALACHA_EXTRACTOR = "offline"
    with connection.schema_editor() as editor:
        editor.create_model(WordCount)
    registry.register(WordCountDrain)
    yield WordCountDrain
    registry.unregister(WordCountDrain.name)
    with connection.schema_editor() as editor:
        editor.delete_model(WordCount)


def test_the_word_count_drain_through_a_run_the_snapshot_a_burst_the_supervisor_and_a_retry(
    word_count, monkeypatch, settings
):
    settings.DRAINS_MAX_ATTEMPTS = 1
    texts = ["We hold that notice is written.", "Appeal dismissed.", "UNCOUNTABLE text here.",
             "The landlord may not cut off water."]
    decisions = [CourtDecision.objects.create(external_id=f"wc-{i}", text=text)
                 for i, text in enumerate(texts)]

    # A run, by the generic command: the items come from the source, the product is written.
    out = io.StringIO()
    call_command("drain", "word_count", "--max-items", "2", stdout=out, stderr=io.StringIO())
    assert dict(WordCount.objects.values_list("decision_id", "words")) == {
        decisions[0].pk: 6, decisions[1].pk: 2}
    assert "2 done" in out.getvalue()

    # The snapshot counts its backlog and shows its cron slot; the schedule has its line.
    service = next(s for s in snapshot()["services"] if s["name"] == "word_count")
    assert (service["backlog"]["pending"], service["backlog"]["done"]) == (2, 2)
    assert (service["schedule"], service["command"]) == ("45 * * * *", "drain word_count")
    assert ("45 * * * *", ["drain", "word_count"]) in [(e[0], e[2]) for e in settings.CRONJOBS]
    assert check_schedule() == []  # in a minute of its own

    # A burst: the supervisor starts it (in this process: the drain exists only in this test).
    set_drain_burst(name="word_count", until=DEFAULT_DEADLINE, actor="test")
    started = []

    def spawn_here(name, *, trigger):
        started.append(run_drain(name, trigger=trigger, tty=False))
        return 4242, "(in-process)"

    monkeypatch.setattr(actions, "spawn_drain", spawn_here)
    supervise(names=["word_count"], write=lambda line: None)
    assert [r.done for r in started] == [1] and started[0].failed == 1
    run = DrainRun.objects.get(pk=started[0].run_id)
    assert (run.trigger, run.items_done, run.items_failed) == ("supervisor", 1, 1)

    # The failed item, listed with its error, and retried: it comes back and is paid again.
    (failed,) = word_count.failed_items(limit=10)
    assert (failed.label, failed.attempts) == ("wc-2", 1)
    assert "has no word count" in failed.error
    CourtDecision.objects.filter(pk=decisions[2].pk).update(text="Now countable, three.")
    assert retry_failed_items(name="word_count", item_keys=None, actor="test").keys == [
        str(decisions[2].pk)]
    run_drain("word_count", trigger="manual", tty=False)
    assert WordCount.objects.get(decision_id=decisions[2].pk).words == 3
    assert set(Item.objects.filter(drain="word_count").values_list("status", flat=True)) == {
        "done"}
    # A decision whose text changed is counted again, its count replaced.
    decisions[1].text, decisions[1].text_sha256 = "Appeal dismissed with costs.", "changed"
    decisions[1].save()
    run_drain("word_count", trigger="manual", tty=False)
    assert WordCount.objects.get(decision_id=decisions[1].pk).words == 4
    # The other drains' items were never touched by it.
    assert set(Item.objects.filter(drain="halacha").values_list("status", flat=True)) == {
        "pending"}
