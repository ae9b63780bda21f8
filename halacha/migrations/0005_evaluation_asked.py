
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('halacha', '0004_gold_set_and_evaluations'),
    ]

    operations = [
        migrations.AddField(
            model_name='evaluation',
            name='asked',
            field=models.IntegerField(default=0, help_text='Of them, asked (answered or not): what it is scored and priced over.'),
        ),
        migrations.AlterField(
            model_name='evaluation',
            name='decisions',
            field=models.IntegerField(default=0, help_text='Gold decisions it was to ask.'),
        ),
    ]
