"""The database cache's table (throttle counters shared by every worker), and the end of the
plain-text tokens of rest_framework.authtoken: the table that held usable keys is dropped; scripts
get new, hashed tokens from `manage.py mint_token`."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # Only the database cache needs a table; with REDIS_URL this does nothing.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):

    dependencies = [
        ("operations", "0001_api_tokens"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, migrations.RunPython.noop),
        migrations.RunSQL(
            [
                "DROP TABLE IF EXISTS authtoken_token",
                "DELETE FROM django_migrations WHERE app = 'authtoken'",
            ],
            migrations.RunSQL.noop,
        ),
    ]
