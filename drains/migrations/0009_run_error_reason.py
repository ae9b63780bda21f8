"""A failed run's one-line reason (``error``), its kind and its traceback, apart.

Rows written before held the whole traceback in ``error``: it moves to ``error_traceback`` and
``error`` keeps its last unindented line (the exception's own ``Type: message``)."""

from django.db import migrations, models

BATCH = 500


def _exception_line(text: str) -> str:
    # A copy of drains.failures.legacy_reason as of this migration (migrations do not import
    # code that may change under them).
    for line in reversed(text.strip().splitlines()):
        if line.strip() and not line.startswith((" ", "\t")) and line.strip() != "…":
            line = " ".join(line.split())
            return line if len(line) <= 300 else line[:299] + "…"
    return text.strip().splitlines()[0][:300]


def split_tracebacks(apps, schema_editor):
    DrainRun = apps.get_model("drains", "DrainRun")
    rows = DrainRun.objects.filter(error__startswith="Traceback (most recent call last)")
    for run in rows.only("pk", "error").iterator(chunk_size=BATCH):
        DrainRun.objects.filter(pk=run.pk).update(
            error_traceback=run.error, error=_exception_line(run.error)
        )


def join_tracebacks(apps, schema_editor):
    DrainRun = apps.get_model("drains", "DrainRun")
    DrainRun.objects.exclude(error_traceback="").update(error=models.F("error_traceback"))


class Migration(migrations.Migration):

    dependencies = [
        ("drains", "0008_enum_choices"),
    ]

    operations = [
        migrations.AddField(
            model_name="drainrun",
            name="error_kind",
            field=models.CharField(
                blank=True, default="", max_length=16,
                choices=[("configuration", "configuration"), ("extractor", "extractor"),
                         ("database", "database"), ("input", "input"),
                         ("internal", "internal (a bug: see the traceback)")],
                help_text="What kind of failure: configuration, extractor, database, input, internal.",
            ),
        ),
        migrations.AddField(
            model_name="drainrun",
            name="error_traceback",
            field=models.TextField(blank=True, default="", help_text="The failure's full traceback (staff only)."),
        ),
        migrations.AlterField(
            model_name="drainrun",
            name="error",
            field=models.TextField(
                blank=True, default="",
                help_text="One line: why the run failed (the exception's own message, drains/failures.py); the traceback is in error_traceback.",
            ),
        ),
        migrations.RunPython(split_tracebacks, join_tracebacks),
    ]
