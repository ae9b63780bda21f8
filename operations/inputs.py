"""The request bodies of the operations API (and their OpenAPI schema): they check only the
*form* of a request (JSON types, known fields). The rules (a burst's deadline: future, aware,
before the week boundary; a reserve's range) live in the services in drains/ and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

REASON_MAX_CHARS = 500  # an enable/disable reason: the event's message carries it whole
POLICY_FIELDS = ("quota", "weekly_reserve", "session_reserve", "reserve_release_hours", "autopilot")


def refuse_unknown_fields(serializer: serializers.Serializer,
                          messages: Callable[[list[str]], dict[str, list[str]]]) -> None:
    """A field the serializer does not know is a client bug: 400 with ``messages(unknown)``."""
    unknown = sorted(set(serializer.initial_data) - set(serializer.fields))
    if unknown:
        raise serializers.ValidationError(messages(unknown))


class StrictBooleanField(serializers.BooleanField):
    """JSON true/false only: "yes", 1 or "on" are a client bug, not a choice."""

    default_error_messages = {"invalid": "Must be true or false (a JSON boolean)."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid")


class _JsonStringField(serializers.CharField):
    """A JSON string only (a number is not silently turned into one)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "format": "date-time", "nullable": True})
class StrictStringField(_JsonStringField):
    """A JSON string only: a date and time, or a reason, or an item's key."""

    default_error_messages = {"invalid": "Must be a string: an ISO 8601 date and time with a UTC offset."}


@extend_schema_field({"type": "string"})
class StrictKeyField(_JsonStringField):
    default_error_messages = {"invalid": "Must be a string: a quota key as the snapshot lists it."}


@extend_schema_field({"type": "number", "nullable": True})
class StrictNumberField(serializers.Field):
    """A JSON number, or null for the setting's default (a string or a boolean is a client
    bug). The range is the policy service's rule (drains/quota/reserve.py), not checked here."""

    default_error_messages = {"invalid": "Must be a number (a JSON number), or null for the default."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class BurstInputSerializer(serializers.Serializer):
    on = StrictBooleanField(help_text="true to start (or move) a burst, false to stop it.")
    until = StrictStringField(
        required=False,
        allow_null=True,
        help_text="Deadline, ISO 8601 with a UTC offset (e.g. 2026-12-05T18:00:00+02:00). "
        "Omit it for the upcoming Saturday 18:00 Asia/Jerusalem. Not allowed with on=false.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        refuse_unknown_fields(self, lambda unknown: {
            name: ["Unknown field; the fields are 'on' and 'until'."] for name in unknown})
        if attrs["on"] is False and attrs.get("until") is not None:
            raise serializers.ValidationError(
                {"until": ["A deadline only goes with on=true; send {\"on\": false} to stop."]}
            )
        return attrs


# --- the operator's actions (drains/operator.py, drains/controls.py, drains/retries.py) ---------


class _NoUnknownFields(serializers.Serializer):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        refuse_unknown_fields(self, lambda unknown: {
            "body": [f"Unknown field(s): {', '.join(unknown)}. Allowed: "
                     f"{', '.join(self.fields)}."]})
        return attrs


class EnabledInputSerializer(_NoUnknownFields):
    enabled = StrictBooleanField(help_text="true to enable the drain, false to disable it.")
    reason = StrictStringField(required=False, allow_blank=True, max_length=REASON_MAX_CHARS,
                               help_text="Why, for the timeline (at most 500 characters).")


class RetryFailedInputSerializer(_NoUnknownFields):
    items = serializers.ListField(
        child=StrictStringField(max_length=64), required=False, allow_empty=False,
        max_length=1000,
        help_text="The failed items' keys to retry; omit it to retry every failed item.")


class EmptyInputSerializer(_NoUnknownFields):
    """No fields: the path says everything."""


# --- the quota policy (drains/quota/controls.py set_quota_policy) ------------------------------


class QuotaPolicyInputSerializer(serializers.Serializer):
    quota = StrictKeyField(
        required=False, max_length=200,
        help_text="The quota key; may be left out when only one is known.")
    weekly_reserve = StrictNumberField(
        required=False, allow_null=True,
        help_text="Fraction of the weekly window kept for the owner, 0..0.9; null: the default "
        "(DRAINS_QUOTA_WEEKLY_RESERVE).")
    session_reserve = StrictNumberField(
        required=False, allow_null=True,
        help_text="Fraction of the 5-hour window kept, 0..0.9; null: the default.")
    reserve_release_hours = StrictNumberField(
        required=False, allow_null=True,
        help_text="Hours before the weekly reset over which the weekly reserve is released "
        "(0 = never), 0..168; null: the default.")
    autopilot = StrictBooleanField(required=False, help_text="Switch the autopilot on or off.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        refuse_unknown_fields(self, lambda unknown: {
            name: [f"Unknown field; the fields are {', '.join(POLICY_FIELDS)}."]
            for name in unknown})
        return attrs
