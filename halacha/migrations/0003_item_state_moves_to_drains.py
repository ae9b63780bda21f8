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
# Back: one UPDATE over both drains' items (each decision's row rewritten once, not twice).
_H, _M = _COLUMNS["halacha"], _COLUMNS["metadata"]
BACKWARD = (
    f"LOCK TABLE {_ITEMS} IN SHARE MODE;\n"
    f"UPDATE {_DECISIONS} d SET {_H[0]} = h.status, {_H[1]} = h.attempts, {_H[2]} = h.last_error, "
    f"{_H[3]} = h.done_at, {_M[0]} = m.status, {_M[1]} = m.attempts, {_M[2]} = m.last_error, "
    f"{_M[3]} = m.done_at FROM {_ITEMS} h, {_ITEMS} m WHERE h.drain = 'halacha' AND h.ref = d.id "
    "AND m.drain = 'metadata' AND m.ref = d.id;\n"
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
