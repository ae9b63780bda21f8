"""The halacha and metadata drains, registered with the drains runtime.

(Skeleton: the runtime issue gives these classes their work loop; the backlog is real already.)
"""

from django.db.models import Count

from drains import registry
from halacha.models import CourtDecision


def _counts(field: str) -> dict[str, int]:
    rows = CourtDecision.objects.values(field).annotate(n=Count("id")).order_by()
    counts = {"pending": 0, "done": 0, "failed": 0}
    for row in rows:
        counts[row[field]] = row["n"]
    return counts


@registry.register
class HalachaDrain:
    name = "halacha"

    @classmethod
    def backlog_counts(cls) -> dict[str, int]:
        return _counts("status")


@registry.register
class MetadataDrain:
    name = "metadata"

    @classmethod
    def backlog_counts(cls) -> dict[str, int]:
        return _counts("metadata_status")
