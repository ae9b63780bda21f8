"""``manage.py drain NAME``: run any registered drain on the drain runtime."""

from drains.runner.command import DrainCommand


class Command(DrainCommand):
    help = (
        "Run one bounded batch of the drain NAME (in a burst: until its deadline), as its cron "
        "line does; the schedule says when cron runs each (manage.py schedule). "
        "One runner per drain at a time: a second copy exits 0 at once."
    )
