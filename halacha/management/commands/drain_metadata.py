"""``manage.py drain_metadata``: fill decisions' metadata on the drain runtime."""

from drains.runner.command import DrainCommand


class Command(DrainCommand):
    help = (
        "Fill court, case number, decision date, judges and parties of pending court decisions "
        "with HALACHA_EXTRACTOR's metadata reader (offline: rules over the header lines). Cron "
        "runs it hourly at :00 (a bounded batch). One runner at a time: a second copy exits 0 "
        "at once."
    )
    drain_name = "metadata"
