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

FORWARD = "\n".join(
    f"INSERT INTO {_ITEMS} (drain, ref, status, attempts, last_error, version, arrived_at, "
    f"done_at, updated_at) SELECT '{drain}', id, {status}, {attempts}, {error}, text_sha256, "
    f"created_at, {done_at}, updated_at FROM {_DECISIONS} ON CONFLICT (drain, ref) DO NOTHING;"
    for drain, (status, attempts, error, done_at) in _COLUMNS.items()
)
BACKWARD = "\n".join(
    f"UPDATE {_DECISIONS} d SET {status} = i.status, {attempts} = i.attempts, "
    f"{error} = i.last_error, {done_at} = i.done_at FROM {_ITEMS} i "
    f"WHERE i.drain = '{drain}' AND i.ref = d.id;"
    for drain, (status, attempts, error, done_at) in _COLUMNS.items()
) + f"\nDELETE FROM {_ITEMS} WHERE drain IN ('halacha', 'metadata');"


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
