"""The answers' shapes of the operations API (and of its OpenAPI schema); the request bodies
are operations/inputs.py.

Output serializers document the shape of the plain data ``operations.selectors`` returns (the
OpenAPI schema); ``as_json`` produces that same representation directly, because the snapshot is
fetched by every open page every 15 seconds (a test holds the two equal).
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from rest_framework import serializers

from drains.failures import ErrorKind
from drains.models import RunMode, RunStatus, Trigger
from drains.quota.kinds import LimitKind
from operations.states import State


class RunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    trigger = serializers.ChoiceField(choices=Trigger.choices)
    mode = serializers.ChoiceField(choices=RunMode.choices)
    host = serializers.CharField()
    pid = serializers.IntegerField()
    backend_pid = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    last_checkpoint_at = serializers.DateTimeField(allow_null=True)
    checkpoint_age_seconds = serializers.IntegerField(
        allow_null=True, help_text="Seconds since the last checkpoint (or the start); running runs only."
    )
    items_done = serializers.IntegerField()
    items_failed = serializers.IntegerField()
    backlog_at_start = serializers.IntegerField(allow_null=True)
    progress = serializers.FloatField(allow_null=True, help_text="items_done / backlog_at_start")
    deadline = serializers.DateTimeField(allow_null=True)
    url = serializers.CharField(help_text="The run's page (/operations/runs/<id>).")
    error = serializers.CharField(
        allow_blank=True, help_text="Why the run failed, one line (the exception's own message)."
    )
    error_kind = serializers.ChoiceField(
        choices=ErrorKind.choices, allow_blank=True,
        help_text="configuration, extractor, database, input or internal; empty when none.",
    )
    models = serializers.ListField(
        child=serializers.CharField(), help_text="Models the run's calls used, most calls first."
    )


class BackoffSerializer(serializers.Serializer):
    until = serializers.DateTimeField()
    reason = serializers.CharField(allow_blank=True)
    observed_at = serializers.DateTimeField(allow_null=True)
    kind = serializers.ChoiceField(
        choices=LimitKind.choices,
        allow_blank=True,  # a backoff written before kinds were recorded
        help_text="Which limit: session, weekly, weekly_model, extra_usage, spend_cap, "
        "api_requests, api_input_tokens, api_output_tokens, overloaded or unknown.",
    )
    model = serializers.CharField(allow_blank=True, help_text="For weekly_model: the model.")
    kind_label = serializers.CharField(allow_blank=True, help_text="The kind, for people.")


class BacklogSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    staged = serializers.IntegerField(help_text="Paid-for results waiting to be promoted.")
    oldest_pending_at = serializers.DateTimeField(
        allow_null=True, required=False,
        help_text="When the oldest pending item arrived (null: nothing pending, or unknown).")
    done = serializers.IntegerField()
    failed = serializers.IntegerField()


class HistoryPointSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    backlog = serializers.IntegerField()


class ProjectionSerializer(serializers.Serializer):
    deadline = serializers.DateTimeField(help_text="The burst deadline, else the weekly reset.")
    deadline_kind = serializers.ChoiceField(choices=["burst", "week"])
    rate_per_hour = serializers.FloatField(
        help_text="Items per hour from now on, measured over the last "
        "DRAINS_PROJECTION_WINDOW_MINUTES of counted time with backoffs left out; in a burst, "
        "working time only, scaled to the concurrency the drain runs at."
    )
    rate_text = serializers.CharField(
        help_text="The rate rounded for people (\"38 per hour\", \"1.6 M per hour\"), or "
        "\"no measured rate yet\"."
    )
    finish_at = serializers.DateTimeField(allow_null=True)
    fraction_by_deadline = serializers.FloatField(allow_null=True)
    on_time = serializers.BooleanField(allow_null=True)
    text = serializers.CharField()
    measured = serializers.BooleanField(
        help_text="False: no run of the extractor and model configured now in the window, so "
        "no rate (\"no measured rate yet\").")
    history = HistoryPointSerializer(many=True)


class EventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField(help_text="The event's page (its whole message and data).")
    at = serializers.DateTimeField()
    drain = serializers.CharField(allow_blank=True)
    kind = serializers.CharField()
    actor = serializers.CharField()
    message = serializers.CharField(allow_blank=True)


class ServiceSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The drain name for drains, else the command.")
    command = serializers.CharField(
        allow_null=True,
        help_text="The manage.py command line its cron line runs; null when cron does not.")
    kind = serializers.ChoiceField(choices=["drain", "supervisor", "job"])
    schedule = serializers.CharField(allow_null=True, help_text="Cron expression, or null.")
    next_fire_at = serializers.DateTimeField(allow_null=True)
    state = serializers.ChoiceField(choices=[state.value for state in State])
    reason = serializers.CharField(help_text="Why it is (not) running, in one line.")
    enabled = serializers.BooleanField(allow_null=True)
    burst_until = serializers.DateTimeField(allow_null=True)
    burst_active = serializers.BooleanField()
    backoff = BackoffSerializer(allow_null=True)
    current_run = RunSerializer(allow_null=True)
    last_run = RunSerializer(allow_null=True)
    backlog = BacklogSerializer(allow_null=True)
    projection = ProjectionSerializer(allow_null=True)
    why_not_run_now = serializers.CharField(
        allow_null=True, help_text="Drains: why \"run now\" cannot apply now (\"the drain is "
        "disabled: enable it first\", \"a backoff is in force until …\", \"the backlog is empty: "
        "nothing to run\"); null when it can, and for other services. The page's button follows it.")
    notes = EventSerializer(many=True)


class BurstResultSerializer(ServiceSerializer):
    """The drain's entry after a burst toggle, with what the operator must know about it."""

    notice = serializers.CharField(
        allow_blank=True,
        help_text="Empty, or e.g. \"burst on, but the drain is disabled: nothing will run\", "
        "or \"no burst to stop\".",
    )
    changed = serializers.BooleanField(
        help_text="False when the request changed nothing (off while no burst is on): no event."
    )


class ProductSerializer(serializers.Serializer):
    """What one drain made in a quota week, and what its runs cost."""

    drain = serializers.CharField()
    product = serializers.CharField(help_text='Its plural name, as the drain names it (e.g. "records").')
    count = serializers.IntegerField(help_text="How many it made in the week.")
    cost_usd = serializers.FloatField(help_text="What the drain's runs in the week cost.")
    cost_each = serializers.FloatField(allow_null=True,
                                       help_text="cost_usd / count; null when it made none.")


class UsageSerializer(serializers.Serializer):
    """One quota key's spending in one quota week (drains/selectors/usage.py)."""

    quota_key = serializers.CharField(
        allow_blank=True, help_text="The quota the drains drew on (DrainControl.quota_key); empty "
        "for drains that never recorded one.")
    week_start = serializers.DateTimeField(help_text="The week boundary (Sat 18:00) that opened it.")
    week_end = serializers.DateTimeField(help_text="The week boundary that closes it.")
    current = serializers.BooleanField(help_text="The week now is in.")
    runs = serializers.IntegerField(help_text="Drain runs started in the week.")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cache_creation_input_tokens = serializers.IntegerField()
    cache_read_input_tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField(help_text="What the extractors reported the calls cost.")
    calls = serializers.IntegerField(
        help_text="Extractor calls answered: items done + items failed (one call per item).")
    refused_calls = serializers.IntegerField(help_text="Runs that ended rate-limited.")
    items_done = serializers.IntegerField(help_text="Items done (by every drain on the key).")
    items_failed = serializers.IntegerField()
    products = ProductSerializer(
        many=True, help_text="What each drain on this key made in the week, in its own words "
        "(empty when none of them produces anything of its own).")
    text = serializers.CharField(
        help_text='For people: "this week: 412 items, 1.3 M input tokens, $18.20; 455 records '
        'at $0.04 each".')


class QuotaWindowSerializer(serializers.Serializer):
    """One window of one quota key: the latest reading any call reported (drains/quota/store.py)."""

    window = serializers.CharField(help_text="The signal's name: five_hour, seven_day, "
                                   "seven_day_opus, seven_day_sonnet, ...")
    # The API's field names; the stubs see DRF's own attributes of the same names.
    label = serializers.CharField(  # type: ignore[assignment]
        help_text='For people: "Week", "5 hours", "Week (Opus)".')
    utilization = serializers.FloatField(help_text="Fraction 0..1 of the window used.")
    resets_at = serializers.DateTimeField(allow_null=True, help_text="The window's reset, as the "
                                          "signal said it (an estimate: the weekly reset drifts).")
    status = serializers.CharField(allow_blank=True, help_text="allowed, allowed_warning, "
                                   "rejected, or empty when the signal did not say.")
    observed_at = serializers.DateTimeField(help_text="When a call last reported it.")
    stale = serializers.BooleanField(help_text="The window has reset since, or the reading is older "
                                     "than DRAINS_QUOTA_STALE_MINUTES.")
    ceiling = serializers.FloatField(help_text="1 minus the reserve in force on it now: no drain "
                                     "call starts at or over it.")
    reserve = serializers.FloatField(help_text="The share held back for the account's owner now.")
    releasing = serializers.BooleanField(help_text="A weekly window in its last "
                                         "reserve_release_hours: the reserve shrinks to 0 at the reset.")
    text = serializers.CharField(help_text='"Week 30 % used · resets Fri 17:57 · seen 2 min ago · '
                                 'reserve 10 % (ceiling 90 %)".')


class QuotaAutopilotSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(help_text="The operator's opt-in (QuotaPolicy.autopilot).")
    state = serializers.CharField(help_text="What the autopilot is doing (drains/quota/autopilot.py).")
    reason = serializers.CharField(allow_blank=True, help_text="Why, in one line.")
    planned_start = serializers.DateTimeField(allow_null=True, help_text="When its rule would start "
                                              "a burst on the current pace; null when none is due.")


class QuotaForecastSerializer(serializers.Serializer):
    week_end_utilization = serializers.FloatField(help_text="The weekly utilization at the reset on "
                                                  "the current pace.")
    lapse = serializers.FloatField(help_text="What would be left unspent then: the ceiling at the "
                                   "reset minus that.")
    resets_at = serializers.DateTimeField(allow_null=True, help_text="The weekly reset it projects to.")


class QuotaSerializer(serializers.Serializer):
    """One quota key (an account the drains draw on): drains/selectors/quota.py."""

    key = serializers.CharField(help_text="The quota key (DrainControl.quota_key).")
    signal_seen = serializers.BooleanField(help_text="false: no call on this key reported a window "
                                           "(an API-key account); nothing is limited or forecast.")
    using_overage = serializers.BooleanField(help_text="Extra usage is being spent: a ceiling too.")
    drains = serializers.ListField(child=serializers.CharField(),
                                   help_text="The drains that draw on this key.")
    windows = QuotaWindowSerializer(many=True)
    weekly_reserve = serializers.FloatField(help_text="The policy's weekly reserve (0..0.9).")
    session_reserve = serializers.FloatField(help_text="The policy's 5-hour reserve (0..0.9).")
    reserve_release_hours = serializers.FloatField(
        help_text="The weekly reserve is released linearly over these last hours before the weekly "
        "reset; 0 = never.")
    ceilings = serializers.DictField(child=serializers.FloatField(),
                                     help_text="Per window, the ceiling in force now.")
    autopilot = QuotaAutopilotSerializer(allow_null=True)
    forecast = QuotaForecastSerializer(allow_null=True, help_text="null without a weekly reading.")
    text = serializers.CharField(help_text='"at this pace the week ends at 72 %: 18 % would lapse; '
                                 'an autopilot burst would start Thu 09:00", or that no signal was '
                                 "seen.")


class SnapshotSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    week_boundary = serializers.DateTimeField(help_text="The upcoming Saturday 18:00 Asia/Jerusalem.")
    services = ServiceSerializer(many=True)
    notes = EventSerializer(many=True, help_text="Notes not tied to a scheduled service.")
    timeline = EventSerializer(many=True)
    usage = UsageSerializer(many=True, help_text="Per quota key, the current quota week and the "
                            "one before it, newest first.")
    quotas = QuotaSerializer(many=True, help_text="Per quota key: the windows' latest readings, "
                             "reserves, ceilings, autopilot and forecast.")


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    reason = serializers.CharField(required=False)


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A machine word: invalid, parse_error, not_authenticated, "
                                 "permission_denied, not_found, method_not_allowed, "
                                 "request_too_large, unsupported_media_type, throttled, server_error.")
    message = serializers.CharField(help_text="One line: what was wrong and how to fix it.")
    fields = serializers.DictField(  # type: ignore[assignment]  # the API's field name
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages per request field (\"body\" for the body as a whole); {} otherwise.",
    )


class ErrorSerializer(serializers.Serializer):
    """Every API error, whatever its status (operations/errors.py)."""

    error = ErrorBodySerializer()


def as_json(value):
    """What the output serializers above return for ``value``, without their per-field cost:
    datetimes as ISO 8601 in the current time zone (Asia/Jerusalem) with their offset."""
    if isinstance(value, datetime):
        return timezone.localtime(value).isoformat()
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    return value


# --- a run, the failed items, the operator's actions (drains/operator.py, drains/retries.py) ---

class ActionResultSerializer(serializers.Serializer):
    message = serializers.CharField(help_text="What was done, in one line (also the event's).")
    changed = serializers.BooleanField(help_text="False: nothing changed, no event written.")
    data = serializers.DictField(  # type: ignore[assignment]  # the API's field name
        help_text="Details: the pid started, the items retried, …")


class RunDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField(help_text="The run's page.")
    drain = serializers.CharField()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    trigger = serializers.ChoiceField(choices=Trigger.choices)
    mode = serializers.ChoiceField(choices=RunMode.choices)
    host = serializers.CharField()
    pid = serializers.IntegerField()
    backend_pid = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    last_checkpoint_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField()
    deadline = serializers.DateTimeField(allow_null=True)
    backlog_at_start = serializers.IntegerField(allow_null=True)
    items_done = serializers.IntegerField()
    items_failed = serializers.IntegerField()
    concurrency = serializers.IntegerField()
    stop_reason = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)
    error_kind = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True, help_text="The error as every surface shows it.")
    traceback = serializers.CharField(allow_null=True, help_text="Staff only (null otherwise).")
    usage = serializers.DictField()
    events = EventSerializer(many=True)
    failed_items = serializers.ListField(child=serializers.DictField())
    staged = serializers.ListField(child=serializers.DictField())
    log = serializers.DictField(help_text="path, lines (the end of the file), why (when none).")
    running = serializers.BooleanField()
    why_not_stop = serializers.CharField(allow_blank=True)


class FailedItemSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # the API's field name
    attempts = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True, help_text="The last error, one line.")
    at = serializers.DateTimeField(help_text="When it failed for good.")


class FailedDrainSerializer(serializers.Serializer):
    drain = serializers.CharField()
    count = serializers.IntegerField(help_text="Failed items in all (the list holds at most 200).")
    items = FailedItemSerializer(many=True)


class FailedListSerializer(serializers.Serializer):
    drains = FailedDrainSerializer(many=True)


# --- the quota policy (drains/quota/controls.py set_quota_policy) ------------------------------

class QuotaPolicyResultSerializer(serializers.Serializer):
    """A quota key's policy after the change: the values in force (defaults filled in)."""

    quota_key = serializers.CharField()
    weekly_reserve = serializers.FloatField()
    session_reserve = serializers.FloatField()
    reserve_release_hours = serializers.FloatField()
    autopilot = serializers.BooleanField()
    defaults = serializers.ListField(
        child=serializers.CharField(),
        help_text="The fields that follow their setting's default (no value of their own).")
    updated_by = serializers.CharField()
class TimelineSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    next_before = serializers.IntegerField(
        allow_null=True, help_text="Pass as ?before= for the next (older) page; null at the end.")
