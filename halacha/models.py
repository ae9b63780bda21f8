"""Court decisions (the backlog) and the halachot extracted from them. Which decisions each
drain has done is the drains framework's to keep (drains.Item), not the decision's."""

from __future__ import annotations

from django.db import models


def configuration_label(backend: str, model: str = "", effort: str = "") -> str:
    """A model configuration as runs, evaluations and choices name it: ``backend:model:effort``,
    the parts left empty left out (``claude-cli:sonnet``, ``anthropic:claude-haiku-4-5:low``)."""
    return ":".join(part for part in (backend, model, effort) if part)


class Language(models.TextChoices):
    HEBREW = "he", "Hebrew"
    ENGLISH = "en", "English"


class CourtDecision(models.Model):
    external_id = models.CharField(max_length=200, unique=True)
    court = models.CharField(max_length=200, blank=True, default="")
    case_number = models.CharField(max_length=200, blank=True, default="")
    decided_on = models.DateField(null=True, blank=True)
    title = models.CharField(max_length=500, blank=True, default="")
    text = models.TextField()
    text_sha256 = models.CharField(max_length=64, default="")
    language = models.CharField(max_length=2, choices=Language.choices, default=Language.ENGLISH)
    url = models.URLField(max_length=1000, blank=True, default="")
    judges = models.JSONField(default=list, blank=True)
    parties = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.external_id} {self.title}".strip()


class Halacha(models.Model):
    decision = models.ForeignKey(CourtDecision, on_delete=models.CASCADE, related_name="halachot")
    ordinal = models.PositiveIntegerField()
    rule = models.TextField()
    quote = models.TextField(help_text="The supporting passage, in the decision's own words: its "
                             "slices of the text, joined by ' … ' when there are several.")
    quote_spans = models.JSONField(
        default=list, blank=True,
        help_text="Where the quote is in the decision's text: [[start, end], ...] (characters).",
    )
    grounding = models.CharField(
        max_length=16, default="exact", blank=True,
        help_text="The tier that grounded the model's quote in the text: exact, nfc, whitespace, "
        "quotes, dashes, points, invisible or ellipsis (halacha/grounding.py).",
    )
    topics = models.JSONField(default=list, blank=True)
    extractor = models.CharField(max_length=32)
    model = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["decision_id", "ordinal"]
        verbose_name_plural = "halachot"
        constraints = [
            models.UniqueConstraint(fields=["decision", "ordinal"], name="halacha_unique_ordinal"),
        ]

    def __str__(self) -> str:
        return f"{self.decision.external_id} #{self.ordinal}"


class GoldEntry(models.Model):
    """A decision an operator checked by hand and added to the gold set (the admin's "add to the
    gold set"), beside the shipped files of halacha/gold/. ``halachot``: [{rule, quote, span}],
    each quote the exact slice text[span[0]:span[1]] (checked on save, as the files are)."""

    external_id = models.CharField(max_length=200, unique=True)
    language = models.CharField(max_length=2, choices=Language.choices)
    title = models.CharField(max_length=500, blank=True, default="")
    court = models.CharField(max_length=200, blank=True, default="")
    case_number = models.CharField(max_length=200, blank=True, default="")
    decided_on = models.DateField(null=True, blank=True)
    text = models.TextField()
    halachot = models.JSONField(default=list)
    notes = models.TextField(blank=True, default="")
    added_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["external_id"]
        verbose_name = "gold set decision"

    def __str__(self) -> str:
        return self.external_id


class Evaluation(models.Model):
    """One run of ``manage.py evaluate``: a configuration (backend, model, effort) over the gold
    set, scored against it, with what it cost; the figures are filled in from its cases."""

    backend = models.CharField(max_length=200)
    model = models.CharField(max_length=100, blank=True, default="")
    effort = models.CharField(max_length=16, blank=True, default="")
    quota_key = models.CharField(max_length=200, blank=True, default="")
    actor = models.CharField(max_length=150, blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="", help_text="Why it stopped short, if it did.")
    decisions = models.IntegerField(default=0, help_text="Gold decisions it was to ask.")
    asked = models.IntegerField(default=0, help_text="Of them, asked (answered or not): what "
                                "it is scored and priced over.")
    answered = models.IntegerField(default=0, help_text="Of them, answered with a usable reply.")
    gold = models.IntegerField(default=0)
    predicted = models.IntegerField(default=0)
    true_positives = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0, help_text="Quotes no tier could ground.")
    tiers = models.JSONField(default=dict, blank=True)
    readings_before = models.JSONField(
        default=dict, blank=True,
        help_text="The quota's readings before its first call: {window: [utilization, resets]}.")
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    five_hour_moved = models.FloatField(null=True, blank=True,
                                        help_text="Utilization of the 5-hour window it moved (0-1).")
    week_moved = models.FloatField(null=True, blank=True,
                                   help_text="Utilization of the weekly window it moved (0-1).")

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"evaluation {self.pk}: {self.label}"

    @property
    def label(self) -> str:
        return configuration_label(self.backend, self.model, self.effort)

    @property
    def complete(self) -> bool:
        """Every decision it was to ask was asked."""
        return self.finished_at is not None and self.asked == self.decisions


class EvaluationCase(models.Model):
    """One gold decision of one evaluation: a copy of it (the evaluation stays readable however
    the gold set changes), and what the model made of it. The evaluation drain's items."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="cases")
    external_id = models.CharField(max_length=200)
    language = models.CharField(max_length=2, choices=Language.choices)
    title = models.CharField(max_length=500, blank=True, default="")
    court = models.CharField(max_length=200, blank=True, default="")
    case_number = models.CharField(max_length=200, blank=True, default="")
    decided_on = models.DateField(null=True, blank=True)
    text = models.TextField()
    gold = models.JSONField(default=list, help_text="The gold halachot's spans.")
    result = models.JSONField(null=True, blank=True,
                              help_text="Predicted spans, tiers, rejections, usage, quota readings.")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.evaluation_id}/{self.external_id}"


class ExtractorChoice(models.Model):
    """The model and effort an operator chose for the drains from an evaluation (the latest row
    is in force while its backend is HALACHA_EXTRACTOR's); audited by an event on each drain."""

    backend = models.CharField(max_length=200)
    model = models.CharField(max_length=100, blank=True, default="")
    effort = models.CharField(max_length=16, blank=True, default="")
    evaluation = models.ForeignKey(Evaluation, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    actor = models.CharField(max_length=150)
    chosen_at = models.DateTimeField()

    class Meta:
        ordering = ["-chosen_at", "-id"]

    def __str__(self) -> str:
        return configuration_label(self.backend, self.model, self.effort)
