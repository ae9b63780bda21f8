from django.db import migrations

from tests.support.gate_app import LATCH_KEY, LATCH_NAMESPACE


class Migration(migrations.Migration):
    """Blocks while a test holds the latch; passes at once otherwise."""

    dependencies = [("gate_app", "0001_initial")]

    operations = [
        migrations.RunSQL(
            f"SELECT pg_advisory_xact_lock({LATCH_NAMESPACE}, {LATCH_KEY})",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
