"""Which extractor and model a run was configured with (``DrainRun.extractor``): the projection
measures its rate only from runs of the one configured now (operations/projection.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("drains", "0010_burst_by"),
    ]

    operations = [
        migrations.AddField(
            model_name="drainrun",
            name="extractor",
            field=models.CharField(
                blank=True, default="", max_length=200,
                help_text="The extractor and model the run was configured with (the drain's "
                "extractor_label, e.g. claude-cli:sonnet): the projection's rate counts only runs "
                "of the one configured now.",
            ),
        ),
    ]
