"""``manage.py drain_halacha``: extract halachot from pending decisions on the drain runtime."""

from drains.runner.command import DrainCommand


class Command(DrainCommand):
    help = (
        "Extract halachot from pending court decisions with HALACHA_EXTRACTOR: the same as "
        "`manage.py drain halacha`. Cron runs a bounded batch at its slot (manage.py schedule); "
        "during a burst the supervisor starts it to run until the deadline. One runner at a "
        "time: a second copy exits 0 at once."
    )
    drain_name = "halacha"
