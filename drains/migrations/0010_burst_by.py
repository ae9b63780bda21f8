from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("drains", "0009_run_error_reason"),
    ]

    operations = [
        migrations.AddField(
            model_name="draincontrol",
            name="burst_by",
            field=models.CharField(
                blank=True,
                default="",
                help_text='Who started the burst ("autopilot" for the quota autopilot\'s).',
                max_length=150,
            ),
        ),
    ]
