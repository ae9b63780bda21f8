"""Court decisions (the backlog) and the halachot extracted from them. Which decisions each
drain has done is the drains framework's to keep (drains.Item), not the decision's."""

from __future__ import annotations

from django.db import models


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
