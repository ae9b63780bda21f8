"""The schedule is what the drains and jobs declare, and its check: the shipped CRONJOBS pass;
any two jobs that can share a minute fail `manage.py check` with both names and the minute; jobs
under 2 minutes apart warn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from croniter import croniter
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from drains import registry, schedule
from drains.checks import check_schedule
from tests.support.db import child_env, manage

CALL = "django.core.management.call_command"
PROJECT_APPS = {"drains", "halacha", "operations"}


def jobs(*pairs):
    """CRONJOBS entries from (expression, command) pairs."""
    return [(expr, CALL, [command], {}, "") for expr, command in pairs]


def problems(cronjobs):
    with override_settings(CRONJOBS=cronjobs):
        return check_schedule()


def errors(cronjobs):
    return [p for p in problems(cronjobs) if p.id.startswith("drains.E")]


def warnings(cronjobs):
    return [p for p in problems(cronjobs) if p.id == "drains.W001"]


def test_the_schedule_is_what_the_drains_and_the_jobs_declare():
    jobs = schedule.scheduled_jobs()
    assert list(settings.CRONJOBS) == schedule.declared_cronjobs()
    # Every drain of the project's apps but one run on demand declares a slot...
    ours = [cls for cls in registry.classes() if cls.__module__.split(".")[0] in PROJECT_APPS]
    assert ours and all(cls.schedule for cls in ours if not cls.on_demand)
    # ...and every drain with one has exactly one line, running its command; others have none.
    for cls in registry.classes():
        lines = [(job.expression, [job.name, *job.args]) for job in jobs if job.drain == cls.name]
        assert lines == ([(cls.schedule, cls.command_line())] if cls.schedule else []), cls.name
    # Every registered job has exactly one line; nothing else is scheduled.
    for command, expression in registry.jobs().items():
        assert [job.expression for job in jobs if job.name == command] == [expression]
    assert len(jobs) == sum(1 for cls in registry.classes() if cls.schedule) + len(registry.jobs())


def test_shipped_schedule_passes_the_check_no_two_jobs_in_one_minute():
    assert problems(settings.CRONJOBS) == []
    weeks = [schedule.week_minutes(job.expression) for job in schedule.scheduled_jobs()]
    assert all(not (a & b) for i, a in enumerate(weeks) for b in weeks[i + 1:])
    # and the supervisor ticks at the interval the runtime plans with
    (tick,) = [job for job in schedule.scheduled_jobs() if job.kind == "supervisor"]
    minutes = sorted(schedule.week_minutes(tick.expression))
    assert {b - a for a, b in pairwise(minutes)} == {
        settings.DRAINS_SUPERVISOR_INTERVAL_MINUTES}


def test_hourly_vs_every_15_minutes_on_the_same_minute_is_an_error():
    found = errors(jobs(("0 * * * *", "drain_metadata"), ("*/15 * * * *", "supervise_drains")))
    assert [e.id for e in found] == ["drains.E001"]
    assert "drain_metadata and supervise_drains both fire at Mon 00:00" in found[0].msg
    assert "167 more times a week" in found[0].msg  # every hour, all week


def test_different_expressions_that_meet_are_an_error():
    # 7-59/15 fires at :07 :22 :37 :52; "52 8 * * *" meets it once a day at 08:52
    found = errors(jobs(("7-59/15 * * * *", "supervise_drains"), ("52 8 * * *", "send_digest")))
    assert len(found) == 1
    assert "supervise_drains and send_digest both fire at Mon 08:52" in found[0].msg
    assert "6 more times a week" in found[0].msg


def test_day_of_week_overlap_is_an_error_naming_the_shared_day():
    # weekdays 06:30 vs weekends-and-Friday 06:30: they meet on Friday only
    found = errors(
        jobs(("30 6 * * 1-5", "fetch_decisions"), ("30 6 * * fri,sat,sun", "send_digest"))
    )
    assert len(found) == 1
    assert "fetch_decisions and send_digest both fire at Fri 06:30." == found[0].msg


def test_sunday_as_0_and_7_is_the_same_day():
    found = errors(jobs(("0 3 * * 0", "send_digest"), ("0 3 * * 7", "fetch_decisions")))
    assert "both fire at Sun 03:00" in found[0].msg


def test_disjoint_days_at_the_same_time_do_not_collide():
    assert (
        problems(jobs(("30 6 * * 1-4", "fetch_decisions"), ("30 6 * * 5-7", "send_digest"))) == []
    )


def test_a_day_of_month_job_can_fire_on_any_weekday_so_it_collides_with_a_weekly_one():
    # the 1st of a month is a Sunday some months: 04:00 on the 1st meets 04:00 on Sundays
    found = errors(jobs(("0 4 1 * *", "send_digest"), ("0 4 * * sun", "fetch_decisions")))
    assert "send_digest and fetch_decisions both fire at Sun 04:00" in found[0].msg


def test_a_near_miss_warns_and_names_both_minutes():
    found = problems(jobs(("0 * * * *", "drain_metadata"), ("1 * * * *", "fetch_decisions")))
    assert [p.id for p in found] == ["drains.W001"]
    assert (
        "drain_metadata fires at Mon 00:00 and fetch_decisions at Mon 00:01, 1 minute apart"
        in found[0].msg
    )


def test_a_near_miss_across_midnight_and_the_week_boundary_warns():
    found = warnings(jobs(("59 23 * * sun", "send_digest"), ("0 0 * * mon", "fetch_decisions")))
    assert len(found) == 1
    assert "send_digest fires at Sun 23:59 and fetch_decisions at Mon 00:00" in found[0].msg


def test_two_minutes_apart_is_fine():
    assert problems(jobs(("0 * * * *", "drain_metadata"), ("2 * * * *", "fetch_decisions"))) == []


def test_the_same_command_twice_is_an_error():
    found = errors(jobs(("0 * * * *", "drain_metadata"), ("30 * * * *", "drain_metadata")))
    assert [e.id for e in found] == ["drains.E003"]


@pytest.mark.parametrize(
    "expression, fragment",
    [
        ("61 * * * *", "out of range"),
        ("0 * * *", "has 4 fields"),
        ("0 0 * * * *", "has 6 fields"),
        ("0 0 L * *", "not crontab syntax"),
        ("0 0 * * 5#2", "not crontab syntax"),
        ("H * * * *", "not crontab syntax"),
        ("@reboot", "fires at boot"),
    ],
)
def test_an_expression_crontab_would_refuse_is_an_error_naming_the_job(expression, fragment):
    found = errors(jobs(("0 * * * *", "drain_metadata"), (expression, "fetch_decisions")))
    assert [e.id for e in found] == ["drains.E002"]
    assert found[0].msg.startswith("fetch_decisions: ")
    assert fragment in found[0].msg


def test_aliases_are_expanded():
    found = errors(jobs(("@hourly", "drain_metadata"), ("@daily", "send_digest")))
    assert "drain_metadata and send_digest both fire at Mon 00:00" in found[0].msg


def test_manage_py_check_fails_on_a_colliding_schedule(tmp_path):
    # a host's settings module replacing the declared schedule with a list of its own
    (tmp_path / "colliding_settings.py").write_text(
        "from config.settings import *  # noqa\n"
        "CRONJOBS = [('0 * * * *', 'django.core.management.call_command', ['drain_metadata'], "
        "{}, ''), ('0 */2 * * *', 'django.core.management.call_command', "
        "['fetch_decisions'], {}, '')]\n"
    )
    env = child_env(DJANGO_SETTINGS_MODULE="colliding_settings", PYTHONPATH=str(tmp_path))
    result = manage("check", env=env)
    assert result.returncode == 1
    assert "drains.E001" in result.stderr
    assert "drain_metadata and fetch_decisions both fire at Mon 00:00" in result.stderr


def test_a_settings_module_reading_the_declared_schedule_is_told_where_to_declare_a_job(tmp_path):
    # CRONJOBS is built once the apps have registered their drains and jobs: not at settings load.
    (tmp_path / "reading_settings.py").write_text(
        "from config.settings import *  # noqa\nCRONJOBS = [*CRONJOBS]\n")
    env = child_env(DJANGO_SETTINGS_MODULE="reading_settings", PYTHONPATH=str(tmp_path))
    result = manage("check", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Configuration error: CRONJOBS is built from the cron slots the drains and jobs declare, "
        "once the apps have loaded: a settings module cannot read it. Declare a job with "
        "drains.registry.register_job in an app's ready(), add lines with CRONJOBS + [...], or "
        "assign CRONJOBS a list of your own."
    ]


def test_manage_py_check_passes_on_the_shipped_schedule():
    result = manage("check", "--tag", "schedule", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_command_in_process_raises_for_a_collision():
    with override_settings(CRONJOBS=jobs(("10 * * * *", "a"), ("10 3 * * *", "b"))):
        with pytest.raises(SystemCheckError, match="a and b both fire at Mon 03:10"):
            call_command("check", tags=["schedule"])


_field = st.one_of(
    st.just("*"),
    st.integers(0, 59).map(str),
    st.tuples(st.integers(0, 29), st.integers(30, 59), st.integers(1, 20)).map(
        lambda t: f"{t[0]}-{t[1]}/{t[2]}"
    ),
)
_hours = st.one_of(st.just("*"), st.integers(0, 23).map(str), st.just("*/5"), st.just("9-17"))
_dows = st.one_of(st.just("*"), st.just("1-5"), st.just("0"), st.just("sat,sun"), st.just("7"))


@hsettings(max_examples=60, deadline=None, database=None)
@given(minute=_field, hour=_hours, dow=_dows)
def test_week_expansion_equals_stepping_croniter_through_a_week(minute, hour, dow):
    expression = f"{minute} {hour} * * {dow}"
    monday = datetime(2024, 1, 1, tzinfo=UTC)
    it = croniter(expression, monday - timedelta(seconds=1))
    stepped = set()
    while (moment := it.get_next(datetime)) < monday + timedelta(days=7):
        stepped.add(int((moment - monday).total_seconds()) // 60)
    assert schedule.week_minutes(expression) == stepped


@pytest.mark.django_db
def test_two_drains_run_by_manage_py_drain_are_two_jobs_for_the_check_and_the_scheduler():
    import threading
    import time as clock

    from drains.runner import Drain, Source
    from drains.scheduler import Clock, Scheduler
    from halacha.models import CourtDecision

    drains = [type(name, (Drain,), {"name": name, "schedule": expression,
                                    "source": Source(CourtDecision)})
              for name, expression in (("alpha", "45 * * * *"), ("beta", "47 * * * *"))]
    for cls in drains:
        registry.register(cls)
    try:
        jobs = schedule.scheduled_jobs()
        assert {"drain alpha", "drain beta"} <= {job.label for job in jobs}
        assert check_schedule() == []  # two jobs, not one command twice
        started: list[str] = []

        class Done:
            pid = 1

            def poll(self):
                return 0

        def spawn(job, fire):
            started.append(job.label)
            return Done()

        # An hour of the schedule in about 1.2 s: each of them fires once.
        ours = [job for job in jobs if job.drain in ("alpha", "beta")]
        runner = Scheduler(ours, clock=Clock(scale=3600, start=datetime(2026, 12, 3, 9, 30,
                                                                         tzinfo=UTC)),
                           spawn=spawn, poll_seconds=0.01)
        thread = threading.Thread(target=runner.run)
        thread.start()
        clock.sleep(1.2)
        runner.stop()
        thread.join(timeout=10)
        assert sorted(started) == ["drain alpha", "drain beta"]
    finally:
        for cls in drains:
            registry.unregister(cls.name)


def test_a_host_moves_a_declared_slot_and_is_held_to_the_same_rules(settings):
    settings.DRAINS_SCHEDULE = {"drain_metadata": "2 * * * *"}
    (moved,) = [job for job in schedule.scheduled_jobs() if job.name == "drain_metadata"]
    assert moved.expression == "2 * * * *"
    assert check_schedule() == []
    settings.DRAINS_SCHEDULE = {"drain_metadata": "5 * * * *"}  # the supervisor's minute
    assert [e.id for e in check_schedule()] == ["drains.E001"]
    settings.DRAINS_SCHEDULE = {"drain_metadatta": "2 * * * *"}
    (error,) = check_schedule()
    assert (error.id, error.msg) == (
        "drains.E004", "DRAINS_SCHEDULE moves 'drain_metadatta', which no drain or job declares.")


def test_a_host_settings_module_may_add_lines_before_or_after_the_declared_ones(tmp_path):
    extra = "('30 3 * * *', 'django.core.management.call_command', ['clearsessions'], {}, '')"
    for n, line in enumerate((f"CRONJOBS = CRONJOBS + [{extra}]", f"CRONJOBS = [{extra}] + CRONJOBS")):
        (tmp_path / f"adding{n}.py").write_text(f"from config.settings import *  # noqa\n{line}\n")
        env = child_env(DJANGO_SETTINGS_MODULE=f"adding{n}", PYTHONPATH=str(tmp_path))
        shown = manage("shell", "-c", "from django.conf import settings; "
                       "print(' '.join(e[2][0] for e in settings.CRONJOBS))", env=env)
        assert shown.returncode == 0, shown.stderr
        assert {"clearsessions", "supervise_drains"} <= set(shown.stdout.split())


def test_manage_py_schedule_on_a_database_never_migrated_is_one_line(django_db_blocker):
    from tests.support.gate_db import fresh_database

    with django_db_blocker.unblock(), fresh_database("unmigrated") as dbname:
        shown = manage("schedule", env=child_env(dbname))
    assert shown.returncode == 1, shown.stdout + shown.stderr
    (line,) = shown.stderr.strip().splitlines()
    assert "no drains tables yet" in line and "run manage.py migrate first" in line
