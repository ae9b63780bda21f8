"""``manage.py drain_metadata``: fill decisions' metadata on the drain runtime."""

from drains.runner.command import DrainCommand


class Command(DrainCommand):
    help = (
        "Fill court, case number, decision date, judges and parties of pending court decisions "
        "with HALACHA_EXTRACTOR (offline: rules over the header lines): the same as `manage.py "
        "drain metadata`. Cron runs a bounded batch at its slot (manage.py schedule). One runner "
        "at a time: a second copy exits 0 at once."
    )
    drain_name = "metadata"
