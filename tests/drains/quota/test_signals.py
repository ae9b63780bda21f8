"""The quota signal parsers (drains/quota/signals.py): the CLI's stream-json rate_limit_event in
both shapes, and the API's unified headers. The lines are the shapes the pinned CLI prints (the
issue quotes one; the older top-level shape and the integer ``1`` are captured forms)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from drains.quota.signals import combine, from_stream_event, from_unified_headers

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
FIVE_H = int(datetime(2026, 12, 1, 13, 0, tzinfo=UTC).timestamp())
WEEK = int(datetime(2026, 12, 4, 17, 57, tzinfo=UTC).timestamp())


def line(text: str) -> dict:
    """A captured line, its @WEEK and @FIVE_H the resets of this test's clock."""
    return json.loads(text.replace("@WEEK", str(WEEK)).replace("@FIVE_H", str(FIVE_H)))


def by_window(signal):
    return {r.window: r for r in signal.windows}


def test_unified_windows_shape__every_window_read():
    event = line(
        '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":@WEEK,'
        '"rateLimitType":"five_hour","overageStatus":"rejected","isUsingOverage":false,'
        '"unifiedWindows":{"five_hour":{"utilization":0.42,"resetsAt":@FIVE_H,"status":"allowed"},'
        '"seven_day":{"utilization":0.3,"resetsAt":@WEEK,"status":"allowed"}}},'
        '"uuid":"u","session_id":"s"}'
    )
    signal = from_stream_event(event, now=NOW)
    windows = by_window(signal)
    assert set(windows) == {"five_hour", "seven_day"}
    assert windows["five_hour"].utilization == 0.42
    assert windows["five_hour"].resets_at == datetime(2026, 12, 1, 13, 0, tzinfo=UTC)
    assert windows["seven_day"].utilization == 0.3
    assert windows["seven_day"].resets_at == datetime(2026, 12, 4, 17, 57, tzinfo=UTC)
    assert windows["seven_day"].status == "allowed"
    assert not signal.using_overage and signal.source == "cli" and not signal.warnings


def test_older_top_level_shape__warning_with_utilization():
    # CLI before unifiedWindows: utilization only at the top level, near or at the limit.
    event = line(
        '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning",'
        '"resetsAt":@WEEK,"rateLimitType":"seven_day","utilization":0.91,'
        '"isUsingOverage":false},"uuid":"u","session_id":"s"}'
    )
    windows = by_window(from_stream_event(event, now=NOW))
    assert list(windows) == ["seven_day"]
    assert windows["seven_day"].utilization == 0.91
    assert windows["seven_day"].status == "allowed_warning"


def test_older_shape_allowed_without_utilization__nothing_read():
    event = line(
        '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":@FIVE_H,'
        '"rateLimitType":"five_hour","isUsingOverage":false}}'
    )
    signal = from_stream_event(event, now=NOW)
    assert signal.windows == () and not signal and not signal.warnings


def test_rejected_integer_one__full_window_and_overage_flag():
    event = line(
        '{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":@WEEK,'
        '"rateLimitType":"seven_day_opus","utilization":1,"isUsingOverage":true}}'
    )
    signal = from_stream_event(event, now=NOW)
    reading = by_window(signal)["seven_day_opus"]
    assert reading.utilization == 1.0 and isinstance(reading.utilization, float)
    assert reading.status == "rejected"
    assert signal.using_overage


def test_unified_beats_top_level_for_the_same_window():
    event = line(
        '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning",'
        '"rateLimitType":"seven_day","utilization":0.5,"resetsAt":@WEEK,'
        '"unifiedWindows":{"seven_day":{"utilization":0.93,"resetsAt":@WEEK}}}}'
    )
    assert by_window(from_stream_event(event, now=NOW))["seven_day"].utilization == 0.93


def test_bad_values_dropped_with_a_warning__never_a_crash():
    event = {
        "type": "rate_limit_event",
        "rate_limit_info": {
            "status": "allowed",
            "unifiedWindows": {
                "five_hour": {"utilization": "lots", "resetsAt": FIVE_H},
                "seven_day": {"utilization": 1.7, "resetsAt": WEEK},
                "seven_day_opus": {"utilization": True, "resetsAt": WEEK},
                "seven_day_sonnet": {"utilization": 0.2, "resetsAt": 99},  # 1970: not a reset
                "Bad Name": {"utilization": 0.1},
                "seven_day_x": "nope",
            },
        },
    }
    signal = from_stream_event(event, now=NOW)
    windows = by_window(signal)
    # Only the sonnet reading survives, without its implausible reset.
    assert list(windows) == ["seven_day_sonnet"]
    assert windows["seven_day_sonnet"].utilization == 0.2
    assert windows["seven_day_sonnet"].resets_at is None
    text = "\n".join(signal.warnings)
    for fragment in ("'lots' is not a number", "1.7 is outside 0..1", "True is not a number",
                     "99 is not a plausible epoch", "'Bad Name'", "'nope' is not an object"):
        assert fragment in text


def test_other_lines_are_no_signal():
    assert not from_stream_event({"type": "result", "result": "{}"}, now=NOW)
    assert not from_stream_event({"type": "rate_limit_event", "rate_limit_info": "x"}, now=NOW)


def test_epoch_in_milliseconds():
    event = {"type": "rate_limit_event", "rate_limit_info": {
        "unifiedWindows": {"five_hour": {"utilization": 0, "resetsAt": FIVE_H * 1000}}}}
    reading = by_window(from_stream_event(event, now=NOW))["five_hour"]
    assert reading.utilization == 0.0 and reading.resets_at.hour == 13


HEADERS = {
    "anthropic-ratelimit-unified-status": "allowed",
    "anthropic-ratelimit-unified-reset": str(FIVE_H),
    "anthropic-ratelimit-unified-representative-claim": "five_hour",
    "anthropic-ratelimit-unified-5h-utilization": "0.42",
    "anthropic-ratelimit-unified-5h-reset": str(FIVE_H),
    "anthropic-ratelimit-unified-5h-status": "allowed",
    "Anthropic-Ratelimit-Unified-7d-Utilization": "0.3",
    "anthropic-ratelimit-unified-7d-reset": str(WEEK),
    "anthropic-ratelimit-unified-7d-status": "allowed",
    "anthropic-ratelimit-unified-overage-status": "rejected",
    "anthropic-ratelimit-unified-overage-utilization": "0.0",
    "content-type": "application/json",
}


def test_headers__both_windows_and_no_overage():
    signal = from_unified_headers(HEADERS, now=NOW)
    windows = by_window(signal)
    assert set(windows) == {"five_hour", "seven_day"}  # "overage" is never a window
    assert windows["five_hour"].utilization == 0.42
    assert windows["seven_day"].resets_at == datetime(2026, 12, 4, 17, 57, tzinfo=UTC)
    assert signal.source == "api" and not signal.using_overage and not signal.warnings


def test_headers__refused_claim_without_figure_is_full_and_overage_allowed_means_spending():
    headers = {
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": str(WEEK),
        "anthropic-ratelimit-unified-representative-claim": "seven_day",
        "anthropic-ratelimit-unified-overage-status": "allowed",
    }
    signal = from_unified_headers(headers, now=NOW)
    reading = by_window(signal)["seven_day"]
    assert reading.utilization == 1.0 and reading.status == "rejected"
    assert signal.using_overage


def test_headers__none_is_no_signal_and_bad_ones_warn():
    assert not from_unified_headers({"content-type": "application/json"}, now=NOW)
    assert not from_unified_headers(None, now=NOW)
    signal = from_unified_headers({
        "anthropic-ratelimit-unified-5h-utilization": "NaN",
        "anthropic-ratelimit-unified-7d-utilization": "0.5",
        "anthropic-ratelimit-unified-7d-reset": "soon",
        "anthropic-ratelimit-unified-7d_opus-utilization": "0.8",
    }, now=NOW)
    windows = by_window(signal)
    assert set(windows) == {"seven_day", "seven_day_opus"}
    assert windows["seven_day"].resets_at is None
    assert any("'soon' is not an epoch" in w for w in signal.warnings)
    assert any("five_hour utilization" in w for w in signal.warnings)


def test_combine__later_reading_wins():
    a = from_unified_headers(HEADERS, now=NOW)
    b = from_stream_event({"type": "rate_limit_event", "rate_limit_info": {
        "unifiedWindows": {"seven_day": {"utilization": 0.31, "resetsAt": WEEK}}}}, now=NOW)
    merged = by_window(combine(a, b))
    assert merged["seven_day"].utilization == 0.31 and merged["five_hour"].utilization == 0.42


def test_supersedes__out_of_order_within_a_period_and_a_reset():
    from datetime import timedelta

    from drains.quota.signals import WindowReading, supersedes

    reset = NOW + timedelta(hours=3)
    full, late = WindowReading("five_hour", 1.0, reset), WindowReading("five_hour", 0.9, reset)
    later = NOW + timedelta(seconds=1)
    assert not supersedes(late, later, full, NOW)  # an older answer noted late
    assert supersedes(full, NOW, late, later)
    # The reset announced a second later (rounding): the same period.
    assert not supersedes(WindowReading("five_hour", 0.9, reset + timedelta(seconds=1)), later,
                          full, NOW)
    # A new window: the reset 5 hours later, the drop is the reset.
    assert supersedes(WindowReading("five_hour", 0.02, reset + timedelta(hours=5)), later,
                      full, NOW)
    # No reset known: the later observation.
    assert supersedes(WindowReading("five_hour", 0.1, None), later, full, NOW)


def test_same_period__a_fifth_of_the_5_hour_window_when_that_is_compressed(settings):
    # The 5-hour window compressed to 18 s (bench/autopilot.py's week in 10 minutes): its next
    # period's reset comes 18 s later, a new period, not the old one's readings.
    from drains.quota.signals import WindowReading, same_period_span, supersedes

    assert same_period_span() == timedelta(hours=1)  # the default: 5 h / 5
    reset = NOW + timedelta(seconds=10)
    full = WindowReading("five_hour", 0.98, reset)
    opened = WindowReading("five_hour", 0.02, reset + timedelta(seconds=18))
    assert not supersedes(opened, NOW + timedelta(seconds=12), full, NOW)  # 1 h: the same period
    settings.DRAINS_QUOTA_SESSION_HOURS = 18 / 3600
    assert same_period_span() == timedelta(seconds=3.6)
    assert supersedes(opened, NOW + timedelta(seconds=12), full, NOW)  # the reset moved ahead
