from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('drains', '0014_host_fault'),
    ]

    operations = [
        migrations.CreateModel(
            name='Item',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('drain', models.CharField(max_length=64)),
                ('ref', models.BigIntegerField(help_text="The source row's primary key.")),
                ('status', models.CharField(choices=[('pending', 'pending'), ('done', 'done'), ('failed', 'failed')], default='pending', max_length=16)),
                ('attempts', models.IntegerField(default=0)),
                ('last_error', models.TextField(blank=True, default='')),
                ('version', models.CharField(blank=True, default='', help_text="The source's version field when the item was queued: a change queues it again.", max_length=128)),
                ('arrived_at', models.DateTimeField()),
                ('done_at', models.DateTimeField(blank=True, null=True)),
                ('updated_at', models.DateTimeField()),
            ],
            options={
                'indexes': [models.Index(condition=models.Q(('status', 'pending')), fields=['drain', 'ref'], name='drains_item_pending'), models.Index(fields=['drain', 'status'], name='drains_item_status')],
                'constraints': [models.UniqueConstraint(fields=('drain', 'ref'), name='drains_item_unique')],
            },
        ),
    ]
