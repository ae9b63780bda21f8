
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('drains', '0015_item'),
    ]

    operations = [
        migrations.CreateModel(
            name='ItemSync',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('drain', models.CharField(max_length=64, unique=True)),
                ('through', models.BigIntegerField(default=0)),
                ('synced_at', models.DateTimeField()),
            ],
        ),
        migrations.AlterField(
            model_name='drainevent',
            name='kind',
            field=models.CharField(choices=[('burst_on', 'burst on'), ('burst_off', 'burst off'), ('burst_expired', 'burst expired'), ('enabled', 'enabled'), ('disabled', 'disabled'), ('model_chosen', 'model and effort chosen'), ('quota_policy', 'quota policy changed'), ('backoff', 'backoff recorded'), ('skipped', 'run skipped'), ('leftovers_promoted', 'leftovers promoted'), ('item_failed', 'item failed'), ('run_crashed', 'run marked crashed'), ('run_corrected', 'run counts corrected'), ('note', 'note'), ('probe', 'probe after reset'), ('probe_wait', "waiting for the quota's probe"), ('slow_down', 'slowed down (per-minute limit)'), ('burst_ended', 'burst ended early (weekly limit)'), ('paused', 'paused for an operator (spend cap)'), ('run_now', 'run now'), ('retry_now', 'retry now (backoff cleared; the next run probes)'), ('stop_run', 'stop a run'), ('retried', 'failed items set to retry'), ('clear_burst', 'supervisor: clear burst'), ('end_burst', 'supervisor: end burst (weekly limit)'), ('crashed', 'supervisor: crashed'), ('hung', 'supervisor: hung'), ('clear_backoff', 'supervisor: clear backoff'), ('keep_backoff', 'supervisor: keep backoff'), ('promote', 'supervisor: promote'), ('hold', 'supervisor: hold'), ('start', 'supervisor: start'), ('supervisor_error', 'supervisor error')], max_length=48),
        ),
    ]
