"""The framework's item state (drains/items.py): how a source's rows become items, go stale, are
worked, failed, retried and counted, and the migration that moved the decisions' own columns
into it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Q
from django.utils import timezone

from drains import items, registry
from drains.models import Item
from drains.runner import Drain, Source
from halacha.drain import HalachaDrain, MetadataDrain
from halacha.importer import import_record, validate_record
from halacha.models import CourtDecision
from tests.support.items import set_state, state


def _decision(n: int, text: str = "We hold that notice is written.") -> CourtDecision:
    return CourtDecision.objects.create(external_id=f"it-{n}", text=text, text_sha256=f"v{n}")


@pytest.mark.django_db
def test_a_saved_row_is_an_item_of_every_drain_whose_source_it_is():
    decision = _decision(1)
    rows = Item.objects.filter(ref=decision.pk).order_by("drain")
    assert [(i.drain, i.status, i.attempts, i.version) for i in rows] == [
        ("halacha", "pending", 0, "v1"), ("metadata", "pending", 0, "v1")]


@pytest.mark.django_db
def test_a_changed_version_queues_a_finished_item_again_and_other_saves_do_not():
    decision = _decision(1)
    set_state("halacha", [decision], "done")
    set_state("metadata", [decision], "failed", attempts=3, last_error="boom")
    decision.title = "renamed"
    decision.save()  # the version is the same: nothing moves
    assert state("halacha", decision) == ("done", 0, "")
    assert state("metadata", decision) == ("failed", 3, "boom")
    decision.text_sha256 = "v1-new"
    decision.save(update_fields=["text_sha256"])
    assert state("halacha", decision) == ("pending", 0, "")
    assert state("metadata", decision) == ("pending", 0, "")
    assert Item.objects.get(drain="halacha", ref=decision.pk).done_at is None


@pytest.mark.django_db
def test_the_importer_queues_a_decision_whose_text_changed_for_every_drain():
    record = {"external_id": "imp-1", "text": "We hold that notice is written."}
    import_record(validate_record(record))
    decision = CourtDecision.objects.get()
    set_state("halacha", [decision], "done")
    set_state("metadata", [decision], "done")
    import_record(validate_record(dict(record, title="a new title")))
    assert state("halacha", decision)[0] == state("metadata", decision)[0] == "done"
    import_record(validate_record(dict(record, text="We hold that notice may be oral.")))
    assert state("halacha", decision)[0] == state("metadata", decision)[0] == "pending"


@pytest.mark.django_db
def test_a_deleted_row_takes_its_items_with_it():
    decision = _decision(1)
    decision.delete()
    assert not Item.objects.exists()


@pytest.mark.django_db
def test_rows_written_without_a_save_are_queued_by_sync_above_the_highest_known_item():
    _decision(1)
    bulk = CourtDecision.objects.bulk_create(
        [CourtDecision(external_id=f"b-{i}", text="t", text_sha256=f"b{i}") for i in range(3)])
    assert HalachaDrain.pending_count() == 1
    assert HalachaDrain.sync() == 3 and HalachaDrain.sync() == 0
    assert sorted(Item.objects.filter(drain="halacha").values_list("ref", "version")) == sorted(
        [(bulk[0].pk - 1, "v1")] + [(d.pk, f"b{i}") for i, d in enumerate(bulk)])
    assert MetadataDrain.pending_count() == 1  # each drain syncs its own


@pytest.mark.django_db
def test_a_source_with_where_has_only_the_rows_it_matches():
    class Only(Drain):
        name = "only_b"
        source = Source(CourtDecision, where=Q(external_id__startswith="b-"))

    registry.register(Only)
    try:
        _decision(1)
        CourtDecision.objects.create(external_id="b-1", text="t")
        CourtDecision.objects.bulk_create([CourtDecision(external_id="a-2", text="t"),
                                           CourtDecision(external_id="b-2", text="t")])
        Only.sync()
        refs = Item.objects.filter(drain="only_b").values_list("ref", flat=True)
        assert set(CourtDecision.objects.filter(pk__in=refs).values_list(
            "external_id", flat=True)) == {"b-1", "b-2"}
    finally:
        registry.unregister("only_b")


@pytest.mark.django_db
def test_next_pending_is_in_ref_order_after_the_cursor_and_drops_items_whose_row_is_gone():
    decisions = [_decision(n) for n in range(5)]
    set_state("halacha", [decisions[1]], "done")
    CourtDecision.objects.filter(pk=decisions[3].pk)._raw_delete(connection.alias)  # no signal
    drain = HalachaDrain()
    first = drain.select_pending(after=None, limit=2)
    assert [d.pk for d in first] == [decisions[0].pk, decisions[2].pk]
    rest = drain.select_pending(after=drain.item_cursor(first[-1]), limit=10)
    assert [d.pk for d in rest] == [decisions[4].pk]
    assert not Item.objects.filter(ref=decisions[3].pk, drain="halacha").exists()


def _promoted(key: str) -> bool:
    """A result for item ``key`` of the halacha drain staged and promoted: whether it was."""
    from drains.staging import promote_staged, stage_result

    stage_result(drain="halacha", item_key=key, payload={"halachot": []})
    return promote_staged(drain="halacha", item_key=key)


@pytest.mark.django_db
def test_finish_is_once_and_fail_counts_to_failed_and_retry_puts_back():
    decision, other = _decision(1), _decision(2)
    key = str(decision.pk)
    assert _promoted(key) is True
    assert _promoted(key) is False  # done already: its result is never written again
    assert _promoted("not-a-key") is False
    for attempt in (1, 2):
        items.fail("metadata", key, f"boom {attempt}", max_attempts=2)
    items.fail("metadata", str(other.pk), "x" * 5000, max_attempts=2)
    assert state("metadata", decision) == ("failed", 2, "boom 2")
    assert len(state("metadata", other)[2]) == items.LAST_ERROR_MAX_CHARS
    assert MetadataDrain.backlog_counts() == {"pending": 1, "done": 0, "failed": 1}
    (failed,) = MetadataDrain.failed_items(limit=10)
    assert (failed.key, failed.label, failed.attempts) == (key, "it-1", 2)
    assert MetadataDrain.retry_failed(["junk", str(other.pk)]) == []  # other is not failed
    assert MetadataDrain.retry_failed(None) == [key]
    assert state("metadata", decision) == ("pending", 0, "boom 2")
    gone = _decision(3)
    CourtDecision.objects.filter(pk=gone.pk)._raw_delete(connection.alias)  # no signal
    assert _promoted(str(gone.pk)) is False  # its result is never written


@pytest.mark.django_db
def test_the_digest_and_projection_reads():
    now = timezone.now()
    early, late = _decision(1), _decision(2)
    Item.objects.filter(ref=early.pk).update(arrived_at=now - timedelta(hours=5))
    set_state("halacha", [early], "done", done_at=now - timedelta(hours=1))
    assert HalachaDrain.done_between(now - timedelta(hours=2), now) == 1
    assert HalachaDrain.done_between(now - timedelta(minutes=30), now) == 0
    assert HalachaDrain.first_item_at() == now - timedelta(hours=5)
    assert HalachaDrain.oldest_pending_at() == Item.objects.get(
        drain="halacha", ref=late.pk).arrived_at
    assert MetadataDrain.oldest_pending_at() == now - timedelta(hours=5)


def test_a_drain_without_a_source_is_refused_at_registration():
    class NoSource(Drain):
        name = "nosource"

    with pytest.raises(TypeError, match="needs a name and a source"):
        registry.register(NoSource)
    assert "nosource" not in registry.names()


@pytest.mark.django_db
def test_a_drain_added_to_a_table_with_rows_gets_all_of_them_though_a_row_was_saved_first():
    for n in range(5):
        _decision(n)

    class Third(Drain):
        name = "third"
        source = Source(CourtDecision, version_field="text_sha256")

    registry.register(Third)
    try:
        _decision(99)  # the importer adds one before the new drain's first run: queued at once
        assert Third.pending_count() == 1
        assert Third.sync() == 5 and Third.pending_count() == 6
        assert Third.sync() == 0
    finally:
        registry.unregister("third")


@pytest.mark.django_db
def test_a_first_sync_of_a_large_source_is_many_short_statements(monkeypatch):
    monkeypatch.setattr(items, "SYNC_BATCH", 3)
    CourtDecision.objects.bulk_create(
        [CourtDecision(external_id=f"many-{i}", text="t") for i in range(10)])
    assert HalachaDrain.sync() == 10 and HalachaDrain.pending_count() == 10


def test_a_version_field_must_be_text():
    with pytest.raises(TypeError, match="a version field must be text"):
        Source(CourtDecision, version_field="decided_on")


@pytest.mark.django_db
@pytest.mark.parametrize("meanwhile", ["a new decision commits", "an operator retries"])
def test_a_short_chunk_never_drops_an_item_that_became_pending_meanwhile(monkeypatch, meanwhile):
    first = _decision(1)
    failed = _decision(2)
    items.fail("halacha", str(failed.pk), "boom", max_attempts=1)
    made = []
    raw = CourtDecision._default_manager.raw

    def raw_then_meanwhile(*args, **kwargs):
        rows = list(raw(*args, **kwargs))
        if not made:  # between the chunk's read and the check for rows that are gone
            made.append(_decision(3) if meanwhile == "a new decision commits"
                        else HalachaDrain.retry_failed(None))
        return rows

    monkeypatch.setattr(CourtDecision._default_manager, "raw", raw_then_meanwhile)
    assert [d.pk for d in HalachaDrain().select_pending(after=None, limit=10)] == [first.pk]
    assert HalachaDrain.pending_count() == 2  # nothing was taken for gone


@pytest.mark.django_db(transaction=True)
def test_a_promotion_and_a_text_change_at_once_queue_instead_of_deadlocking(monkeypatch):
    import threading
    import time

    from django.db import connections

    from drains.staging import promote_staged, stage_result

    record = {"external_id": "dl-1", "text": "We hold that notice is written."}
    import_record(validate_record(record))
    decision = CourtDecision.objects.get()
    stage_result(drain="halacha", item_key=str(decision.pk),
                 payload={"halachot": [{"rule": "old rule", "quote": "notice is written"}]})
    marked = threading.Event()
    write = HalachaDrain.promote.__func__

    def marked_then_wait(cls, key, payload):
        # The item is marked done and the decision's row KEY SHARE-locked, in the promotion's
        # open transaction: the importer now wants the decision's row, and then the item.
        marked.set()
        time.sleep(1.0)
        return write(cls, key, payload)

    monkeypatch.setattr(HalachaDrain, "promote", classmethod(marked_then_wait))
    outcome = {}

    def promote():
        try:
            outcome["promote"] = promote_staged(drain="halacha", item_key=str(decision.pk))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcome["promote"] = repr(exc)
        finally:
            connections.close_all()

    def change_text():
        marked.wait(5)
        try:
            outcome["import"] = import_record(validate_record(dict(record, text="Now oral.")))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcome["import"] = repr(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=promote), threading.Thread(target=change_text)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcome == {"promote": True, "import": "updated"}
    # The text changed after the promotion: the decision is pending again, its old rule gone.
    assert state("halacha", decision)[0] == "pending"
    assert not decision.halachot.exists()


@pytest.mark.django_db
def test_an_item_worked_again_replaces_what_its_earlier_version_wrote():
    from drains.staging import promote_staged, stage_result

    decision = _decision(1, text="We hold that notice is written. And that it is signed.")
    for rule in ("first", "second"):
        payload = {"halachot": [{"rule": rule, "quote": "notice is written"},
                                {"rule": rule + " too", "quote": "it is signed"}]}
        assert stage_result(drain="halacha", item_key=str(decision.pk), payload=payload)
        assert promote_staged(drain="halacha", item_key=str(decision.pk)) is True
        decision.text_sha256 = f"v-{rule}"
        decision.save()  # a new version: the item is pending again
    assert list(decision.halachot.order_by("ordinal").values_list("rule", flat=True)) == [
        "second", "second too"]
    assert stage_result(drain="halacha", item_key=str(decision.pk), payload={"halachot": []})
    assert promote_staged(drain="halacha", item_key=str(decision.pk)) is True
    assert not decision.halachot.exists()


# --- the data migration --------------------------------------------------------------------------

BEFORE = [("halacha", "0002_halacha_grounding"), ("drains", "0014_host_fault")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_carries_both_drains_state_over_exactly_and_back():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("halacha", "CourtDecision")
    at = timezone.now() - timedelta(days=3)
    done_at = at + timedelta(hours=1)
    rows = {
        "pending": dict(),
        "done": dict(status="done", attempts=1, extracted_at=done_at,
                     metadata_status="failed", metadata_attempts=3, metadata_error="no JSON"),
        "failed": dict(status="failed", attempts=3, last_error="the reply is not JSON",
                       metadata_status="done", metadata_extracted_at=done_at),
    }
    made = {}
    for name, fields in rows.items():
        made[name] = old.objects.create(external_id=f"mig-{name}", text=name,
                                        text_sha256=f"sha-{name}", **fields)
    old.objects.filter(pk__in=[d.pk for d in made.values()]).update(created_at=at)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    def item(drain, name):
        i = Item.objects.get(drain=drain, ref=made[name].pk)
        return (i.status, i.attempts, i.last_error, i.done_at, i.version, i.arrived_at)

    assert item("halacha", "pending") == ("pending", 0, "", None, "sha-pending", at)
    assert item("halacha", "done") == ("done", 1, "", done_at, "sha-done", at)
    assert item("halacha", "failed") == ("failed", 3, "the reply is not JSON", None,
                                         "sha-failed", at)
    assert item("metadata", "pending") == ("pending", 0, "", None, "sha-pending", at)
    assert item("metadata", "done") == ("failed", 3, "no JSON", None, "sha-done", at)
    assert item("metadata", "failed") == ("done", 0, "", done_at, "sha-failed", at)
    assert Item.objects.count() == 6
    columns = {c.name for c in connection.introspection.get_table_description(
        connection.cursor(), CourtDecision._meta.db_table)}
    assert not columns & {"status", "attempts", "last_error", "extracted_at", "metadata_status",
                          "metadata_attempts", "metadata_error", "metadata_extracted_at"}

    # And back: the columns get the state again, the items are gone.
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE[:1])
    with connection.cursor() as cursor:
        cursor.execute("SELECT external_id, status, attempts, last_error, metadata_status, "
                       "metadata_attempts, metadata_error FROM halacha_courtdecision "
                       "ORDER BY external_id")
        assert cursor.fetchall() == [
            ("mig-done", "done", 1, "", "failed", 3, "no JSON"),
            ("mig-failed", "failed", 3, "the reply is not JSON", "done", 0, ""),
            ("mig-pending", "pending", 0, "", "pending", 0, ""),
        ]
        cursor.execute("SELECT count(*) FROM drains_item")
        assert cursor.fetchone() == (0,)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
