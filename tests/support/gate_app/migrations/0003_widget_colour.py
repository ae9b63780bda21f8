from django.db import migrations, models


class Migration(migrations.Migration):
    """ALTER TABLE ... ADD COLUMN: needs ACCESS EXCLUSIVE, so any open reader blocks it."""

    dependencies = [("gate_app", "0002_wait_for_latch")]

    operations = [
        migrations.AddField(
            model_name="widget",
            name="colour",
            field=models.CharField(blank=True, default="", max_length=20),
        ),
    ]
