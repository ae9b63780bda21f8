"""Each drain's state of each decision moves from the decision's own columns to the drains
framework's table (drains.Item): halacha's ``status``/``attempts``/``last_error``/
``extracted_at`` and metadata's ``metadata_*`` become one item row per drain and decision, exactly
(pending, done, failed with its attempts and error; arrived when the decision was created; its
version the decision's text digest). Reversible: going back copies the state into the columns."""

from django.db import migrations

_ITEMS = "drains_item"
_DECISIONS = "halacha_courtdecision"
_COLUMNS = {  # drain: (status, attempts, error, done at)
    "halacha": ("status", "attempts", "last_error", "extracted_at"),
    "metadata": ("metadata_status", "metadata_attempts", "metadata_error", "metadata_extracted_at"),
}

# Writers wait while the state is copied (a run of the old code marking a decision done between
# the copy and the columns' removal would otherwise be lost, and its decision paid for twice).
FORWARD = f"LOCK TABLE {_DECISIONS} IN SHARE MODE;\n" + "\n".join(
    f"INSERT INTO {_ITEMS} (drain, ref, status, attempts, last_error, version, arrived_at, "
    f"done_at, updated_at) SELECT '{drain}', id, {status}, {attempts}, {error}, text_sha256, "
    f"created_at, {done_at}, updated_at FROM {_DECISIONS} ON CONFLICT (drain, ref) DO NOTHING;"
    for drain, (status, attempts, error, done_at) in _COLUMNS.items()
)
# Back: one UPDATE over both drains' items (each decision's row rewritten once, not twice); a
# decision one drain has no item of keeps that drain's columns as re-added (pending).
_H, _M = _COLUMNS["halacha"], _COLUMNS["metadata"]
BACKWARD = (
    f"LOCK TABLE {_ITEMS} IN SHARE MODE;\n"
    f"UPDATE {_DECISIONS} d SET "
    f"{_H[0]} = coalesce(s.hs, d.{_H[0]}), {_H[1]} = coalesce(s.ha, d.{_H[1]}), "
    f"{_H[2]} = coalesce(s.he, d.{_H[2]}), {_H[3]} = s.hd, "
    f"{_M[0]} = coalesce(s.ms, d.{_M[0]}), {_M[1]} = coalesce(s.ma, d.{_M[1]}), "
    f"{_M[2]} = coalesce(s.me, d.{_M[2]}), {_M[3]} = s.md "
    "FROM (SELECT x.id, h.status hs, h.attempts ha, h.last_error he, h.done_at hd, "
    "m.status ms, m.attempts ma, m.last_error me, m.done_at md "
    f"FROM {_DECISIONS} x LEFT JOIN {_ITEMS} h ON h.drain = 'halacha' AND h.ref = x.id "
    f"LEFT JOIN {_ITEMS} m ON m.drain = 'metadata' AND m.ref = x.id) s WHERE s.id = d.id;\n"
    f"DELETE FROM {_ITEMS} WHERE drain IN ('halacha', 'metadata');"
)


class Migration(migrations.Migration):

    dependencies = [
        ('halacha', '0002_halacha_grounding'),
        ('drains', '0015_item'),
    ]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
        migrations.RemoveIndex(
            model_name='courtdecision',
            name='decision_pending',
        ),
        migrations.RemoveIndex(
            model_name='courtdecision',
            name='decision_meta_pending',
        ),
        migrations.RemoveIndex(
            model_name='courtdecision',
            name='decision_status',
        ),
        migrations.RemoveField(
            model_name='courtdecision',
            name='attempts',
        ),
        migrations.RemoveField(
            model_name='courtdecision',
            name='extracted_at',
        ),
        migrations.RemoveField(
            model_name='courtdecision',
            name='last_error',
        ),
        migrations.RemoveField(
            model_name='courtdecision',
            name='metadata_attempts',
        ),
        migrations.RemoveField(
            model_name='courtdecision',
            name='metadata_error',
        ),
        migrations.RemoveField(
            model_name='courtdecision',
            name='metadata_extracted_at',
        ),
        migrations.RemoveField(
            model_name='courtdecision',
            name='metadata_status',
        ),
        migrations.RemoveField(
            model_name='courtdecision',
            name='status',
        ),
    ]
