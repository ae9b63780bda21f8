"""Halachot record where their quote is in the decision and which grounding tier found it.

Every halacha stored before this was an exact match (the only test then): its offsets are found
in SQL, in one statement (PostgreSQL's strpos and length count characters, as Python's str does).
"""

from django.db import migrations, models

# The first occurrence of each existing quote in its decision: [[start, end]] (0-based, end
# exclusive). A quote no longer in the text (it changed since) keeps [] .
SPANS_OF_EXACT_QUOTES = """
UPDATE halacha_halacha AS h
   SET quote_spans = jsonb_build_array(jsonb_build_array(
       strpos(d.text, h.quote) - 1, strpos(d.text, h.quote) - 1 + length(h.quote)))
  FROM halacha_courtdecision AS d
 WHERE d.id = h.decision_id AND h.quote <> '' AND strpos(d.text, h.quote) > 0
"""


class Migration(migrations.Migration):

    dependencies = [
        ('halacha', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='halacha',
            name='grounding',
            field=models.CharField(blank=True, default='exact', help_text="The tier that grounded the model's quote in the text: exact, nfc, whitespace, quotes, dashes, points, invisible or ellipsis (halacha/grounding.py).", max_length=16),
        ),
        migrations.AddField(
            model_name='halacha',
            name='quote_spans',
            field=models.JSONField(blank=True, default=list, help_text="Where the quote is in the decision's text: [[start, end], ...] (characters)."),
        ),
        migrations.AlterField(
            model_name='halacha',
            name='quote',
            field=models.TextField(help_text="The supporting passage, in the decision's own words: its slices of the text, joined by ' … ' when there are several."),
        ),
        migrations.RunSQL(SPANS_OF_EXACT_QUOTES, reverse_sql=migrations.RunSQL.noop),
    ]
