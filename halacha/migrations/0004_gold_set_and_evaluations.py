"""The gold set's operator entries, evaluations and their cases, the operator's choice of model
and effort; and the decision drains' sync mark past the items 0003 queued."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('halacha', '0003_item_state_moves_to_drains'),
        ('drains', '0016_item_sync_and_model_chosen_event'),
    ]

    operations = [
        # The decision drains' items were all queued by 0003: their sync mark starts past them.
        migrations.RunSQL(
            "INSERT INTO drains_itemsync (drain, through, synced_at) SELECT d.name, "
            "coalesce((SELECT max(id) FROM halacha_courtdecision), 0), now() "
            "FROM (VALUES ('halacha'), ('metadata')) AS d(name) ON CONFLICT (drain) DO NOTHING",
            "DELETE FROM drains_itemsync WHERE drain IN ('halacha', 'metadata')"),
        migrations.CreateModel(
            name='Evaluation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('backend', models.CharField(max_length=200)),
                ('model', models.CharField(blank=True, default='', max_length=100)),
                ('effort', models.CharField(blank=True, default='', max_length=16)),
                ('quota_key', models.CharField(blank=True, default='', max_length=200)),
                ('actor', models.CharField(blank=True, default='', max_length=150)),
                ('started_at', models.DateTimeField()),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('note', models.TextField(blank=True, default='', help_text='Why it stopped short, if it did.')),
                ('decisions', models.IntegerField(default=0, help_text='Gold decisions asked.')),
                ('answered', models.IntegerField(default=0, help_text='Of them, answered with a usable reply.')),
                ('gold', models.IntegerField(default=0)),
                ('predicted', models.IntegerField(default=0)),
                ('true_positives', models.IntegerField(default=0)),
                ('rejected', models.IntegerField(default=0, help_text='Quotes no tier could ground.')),
                ('tiers', models.JSONField(blank=True, default=dict)),
                ('readings_before', models.JSONField(blank=True, default=dict, help_text="The quota's readings before its first call: {window: [utilization, resets]}.")),
                ('input_tokens', models.BigIntegerField(default=0)),
                ('output_tokens', models.BigIntegerField(default=0)),
                ('cost_usd', models.DecimalField(blank=True, decimal_places=6, max_digits=12, null=True)),
                ('five_hour_moved', models.FloatField(blank=True, help_text='Utilization of the 5-hour window it moved (0-1).', null=True)),
                ('week_moved', models.FloatField(blank=True, help_text='Utilization of the weekly window it moved (0-1).', null=True)),
            ],
            options={
                'ordering': ['-started_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='GoldEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('external_id', models.CharField(max_length=200, unique=True)),
                ('language', models.CharField(choices=[('he', 'Hebrew'), ('en', 'English')], max_length=2)),
                ('title', models.CharField(blank=True, default='', max_length=500)),
                ('court', models.CharField(blank=True, default='', max_length=200)),
                ('case_number', models.CharField(blank=True, default='', max_length=200)),
                ('decided_on', models.DateField(blank=True, null=True)),
                ('text', models.TextField()),
                ('halachot', models.JSONField(default=list)),
                ('notes', models.TextField(blank=True, default='')),
                ('added_by', models.CharField(blank=True, default='', max_length=150)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'verbose_name': 'gold set decision',
                'ordering': ['external_id'],
            },
        ),
        migrations.CreateModel(
            name='EvaluationCase',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('external_id', models.CharField(max_length=200)),
                ('language', models.CharField(choices=[('he', 'Hebrew'), ('en', 'English')], max_length=2)),
                ('title', models.CharField(blank=True, default='', max_length=500)),
                ('court', models.CharField(blank=True, default='', max_length=200)),
                ('case_number', models.CharField(blank=True, default='', max_length=200)),
                ('decided_on', models.DateField(blank=True, null=True)),
                ('text', models.TextField()),
                ('gold', models.JSONField(default=list, help_text="The gold halachot's spans.")),
                ('result', models.JSONField(blank=True, help_text='Predicted spans, tiers, rejections, usage, quota readings.', null=True)),
                ('evaluation', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='cases', to='halacha.evaluation')),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.CreateModel(
            name='ExtractorChoice',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('backend', models.CharField(max_length=200)),
                ('model', models.CharField(blank=True, default='', max_length=100)),
                ('effort', models.CharField(blank=True, default='', max_length=16)),
                ('actor', models.CharField(max_length=150)),
                ('chosen_at', models.DateTimeField()),
                ('evaluation', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='halacha.evaluation')),
            ],
            options={
                'ordering': ['-chosen_at', '-id'],
            },
        ),
    ]
