"""The one reset-time parser, table-driven over every sample in docs/rate-limits.md.

Each case pins "now" (freezegun) and states the reset it must produce, worked out by hand from
the message, the zone's rules and the sanity bounds — not read back from the parser.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from datetime import time as _time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from drains.quota.resets import (
    RateLimited,
    is_limit_message,
    parse_reset,
    parse_reset_headers,
)
from drains.quota.wallclock import next_wall_clock


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


FALLBACK = "fallback"  # expected reset_at = now + DRAINS_FALLBACK_BACKOFF_SECONDS, trusted=False

# (id, message, now (UTC), expected reset (UTC) or FALLBACK)
TEXT_CASES = [
    # --- CLI v1.0.x: the epoch form -------------------------------------------------------
    ("epoch-1", "Claude AI usage limit reached|1762952400", utc(2025, 11, 12, 11, 0), utc(2025, 11, 12, 13, 0)),
    ("epoch-2", "Claude AI usage limit reached|1760000400", utc(2025, 10, 9, 8, 59), utc(2025, 10, 9, 9, 0)),
    ("epoch-ms", "Claude AI usage limit reached|1762952400000", utc(2025, 11, 12, 11, 0), utc(2025, 11, 12, 13, 0)),
    ("epoch-in-past", "Claude AI usage limit reached|1762952400", utc(2025, 11, 12, 13, 0), FALLBACK),
    # --- CLI v1.0.x: "Your limit will reset at ..." ---------------------------------------
    # Warsaw is CET (+1) in March before the switch: 17:00 local = 16:00Z.
    ("reset-at-warsaw", "Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw).",
     utc(2026, 3, 10, 10, 0), utc(2026, 3, 10, 16, 0)),
    # Etc/GMT+5 is UTC-5 (inverted sign). 15:00 local now, so 13:00 is tomorrow: 18:00Z.
    ("reset-at-etc-gmt+5", "Claude usage limit reached. Your limit will reset at 1pm (Etc/GMT+5).",
     utc(2026, 3, 10, 20, 0), utc(2026, 3, 11, 18, 0)),
    ("reset-at-bogota", "Claude usage limit reached. Your limit will reset at 3pm (America/Bogota).",
     utc(2026, 6, 1, 12, 0), utc(2026, 6, 1, 20, 0)),
    # US DST starts 2026-03-08: 9am the next morning is CDT (-5), not CST (-6).
    ("reset-at-chicago-dst", "⎿  Claude usage limit reached. Your limit will reset at 9am (America/Chicago).",
     utc(2026, 3, 7, 20, 0), utc(2026, 3, 8, 14, 0)),
    # --- mid-2025 (U+2219 separator), no zone: Asia/Jerusalem ------------------------------
    # 22:00 IST (+2) now; 1am tomorrow is 23:00Z today.
    ("5h-1am", "5-hour limit reached ∙ resets 1am", utc(2026, 1, 15, 20, 0), utc(2026, 1, 15, 23, 0)),
    # Israel springs forward on Fri 2026-03-27 at 02:00: 5am that morning is IDT (+3) = 02:00Z.
    ("5h-5am-jerusalem-dst", "5-hour limit reached ∙ resets 5am", utc(2026, 3, 26, 23, 30), utc(2026, 3, 27, 2, 0)),
    ("weekly-date-no-zone", "Opus weekly limit reached ∙ resets Nov 10, 5pm",
     utc(2025, 11, 8, 10, 0), utc(2025, 11, 10, 15, 0)),
    # --- v2.0.x (U+00B7 separator, trailing text) -----------------------------------------
    # NZ leaves DST on Sun 2026-04-05 03:00 -> 02:00: 2pm that day is NZST (+12) = 02:00Z.
    ("v2-auckland-dst-end",
     "5-hour limit reached · resets 2pm (Pacific/Auckland) · /upgrade to Max 20x or turn on /extra-usage",
     utc(2026, 4, 4, 12, 0), utc(2026, 4, 5, 2, 0)),
    ("v2-moscow-date", "Weekly limit reached · resets Dec 2, 7pm (Europe/Moscow) ·",
     utc(2026, 11, 28, 10, 0), utc(2026, 12, 2, 16, 0)),
    # --- v2.1.x ----------------------------------------------------------------------------
    # Lisbon falls back on 2026-10-25 at 02:00 WEST: 1pm that day is WET (+0).
    ("v21-lisbon-dst-end", "You've hit your limit · resets 1pm (Europe/Lisbon)",
     utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 13, 0)),
    ("v21-toronto", "You've hit your limit · resets 6pm (America/Toronto)",
     utc(2026, 7, 1, 12, 0), utc(2026, 7, 1, 22, 0)),
    ("v21-moscow-minutes", "You've hit your limit · resets 3:30am (Europe/Moscow)",
     utc(2026, 7, 1, 12, 0), utc(2026, 7, 2, 0, 30)),
    # Exactly 15:20 in Shanghai now: "strictly after" means tomorrow.
    ("v21-shanghai-exactly-now", "You've hit your limit · resets 3:20pm (Asia/Shanghai)",
     utc(2026, 7, 1, 7, 20), utc(2026, 7, 2, 7, 20)),
    ("v21-recife-date-at", "You've hit your limit · resets Apr 23 at 4pm (America/Recife)",
     utc(2026, 4, 20, 12, 0), utc(2026, 4, 23, 19, 0)),
    # LA falls back on 2026-11-01 at 02:00; 00:50 that night is still PDT (-7).
    ("v21-session-la", "You've hit your session limit · resets 12:50am (America/Los_Angeles)",
     utc(2026, 11, 1, 7, 0), utc(2026, 11, 1, 7, 50)),
    ("v21-weekly-detroit", "You've hit your weekly limit · resets 5pm (America/Detroit)",
     utc(2026, 7, 1, 12, 0), utc(2026, 7, 1, 21, 0)),
    ("v21-extra-usage-tokyo", "You're out of extra usage · resets Apr 24, 4am (Asia/Tokyo)",
     utc(2026, 4, 20, 0, 0), utc(2026, 4, 23, 19, 0)),
    # Seen after the date: the next Apr 24 is a year away -> not trusted.
    ("v21-extra-usage-next-year", "You're out of extra usage · resets Apr 24, 4am (Asia/Tokyo)",
     utc(2026, 12, 1, 0, 0), FALLBACK),
    # --- editor build, /usage screen ------------------------------------------------------
    ("relative-2h", "resets in 2h", utc(2026, 5, 5, 10, 0), utc(2026, 5, 5, 12, 0)),
    ("relative-2h30m", "5-hour limit reached · resets in 2h 30m", utc(2026, 5, 5, 10, 0), utc(2026, 5, 5, 12, 30)),
    ("usage-screen", "Resets Jan 12, 10:59am (America/New_York)", utc(2026, 1, 8, 12, 0), utc(2026, 1, 12, 15, 59)),
    # Across New Year: the year is not printed; the next Jan 12 is in 2026.
    ("usage-screen-new-year", "Resets Jan 12, 10:59am (America/New_York)",
     utc(2025, 12, 30, 12, 0), utc(2026, 1, 12, 15, 59)),
    # --- stream-json and json result objects ----------------------------------------------
    ("stream-json-event",
     '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed","resetsAt":1774447200,'
     '"rateLimitType":"five_hour","overageStatus":"rejected","isUsingOverage":false}}',
     utc(2026, 3, 25, 10, 0), utc(2026, 3, 25, 14, 0)),
    ("json-result-epoch",
     '{"type":"result","subtype":"success","is_error":true,"duration_ms":393,"duration_api_ms":0,'
     '"num_turns":1,"result":"Claude AI usage limit reached|1755806400","session_id":"...",'
     '"total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0}}',
     utc(2025, 8, 21, 16, 0), utc(2025, 8, 21, 20, 0)),
    ("json-result-success-no-reset",
     '{"type":"result","subtype":"success","is_error":false,"duration_ms":4086,"num_turns":1,'
     '"result":"...","stop_reason":"end_turn","total_cost_usd":0.024,"usage":{"input_tokens":1,"output_tokens":2}}',
     utc(2026, 1, 1, 0, 0), FALLBACK),
    # --- API bodies ------------------------------------------------------------------------
    ("api-429-body",
     '{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your '
     "account's rate limit. Please try again later.\"},\"request_id\":\"req_...\"}",
     utc(2026, 1, 1, 0, 0), FALLBACK),
    ("api-spend-limit",
     "You have reached your specified API usage limits. You will regain access on 2026-04-01 at 00:00 UTC.",
     utc(2026, 3, 20, 0, 0), utc(2026, 4, 1, 0, 0)),
    # --- DST edges in Asia/Jerusalem (the operator's zone, used when none is named) ----------
    # 02:30 does not exist on 2026-03-27 (02:00 -> 03:00): the reset moves past the gap, 03:30 IDT.
    ("jerusalem-spring-gap", "5-hour limit reached · resets 2:30am", utc(2026, 3, 26, 22, 0), utc(2026, 3, 27, 0, 30)),
    # 01:30 happens twice on 2026-10-25: first as IDT (+3) = 22:30Z ...
    ("jerusalem-fall-first", "5-hour limit reached · resets 1:30am", utc(2026, 10, 24, 22, 0), utc(2026, 10, 24, 22, 30)),
    # ... and once more as IST (+2) = 23:30Z, which is the next one once the first has passed.
    ("jerusalem-fall-second", "5-hour limit reached · resets 1:30am", utc(2026, 10, 24, 22, 45), utc(2026, 10, 24, 23, 30)),
    # --- DST edges in Europe/London ---------------------------------------------------------
    ("london-3pm-across-spring", "You've hit your limit · resets 3pm (Europe/London)",
     utc(2026, 3, 28, 16, 0), utc(2026, 3, 29, 14, 0)),
    ("london-spring-gap", "You've hit your limit · resets 1:30am (Europe/London)",
     utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 1, 30)),
    ("london-fall-first", "You've hit your limit · resets 1:30am (Europe/London)",
     utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30)),
    ("london-fall-second", "You've hit your limit · resets 1:30am (Europe/London)",
     utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 1, 30)),
    # --- nothing trustworthy ------------------------------------------------------------------
    ("unknown-zone", "You've hit your limit · resets 1pm (Mars/Olympus_Mons)", utc(2026, 1, 1), FALLBACK),
    ("not-a-clock", "You've hit your limit · resets 13pm (Europe/Lisbon)", utc(2026, 1, 1), FALLBACK),
    ("spend-limit-too-far", "You will regain access on 2026-04-01 at 00:00 UTC.", utc(2026, 1, 1), FALLBACK),
    ("garbage", "Error: something went wrong", utc(2026, 1, 1), FALLBACK),
    ("empty", "", utc(2026, 1, 1), FALLBACK),
]


@pytest.mark.parametrize(
    ("message", "now", "expected"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES]
)
def test_parse_reset__every_sample(message, now, expected, settings):
    settings.DRAINS_OPERATOR_TZ = "Asia/Jerusalem"
    settings.DRAINS_FALLBACK_BACKOFF_SECONDS = 900
    with freeze_time(now):
        info = parse_reset(message)  # "now" from the frozen clock
    assert info.raw == message  # the raw text is always kept
    if expected is FALLBACK:
        assert info.trusted is False
        assert info.reset_at == now + timedelta(seconds=900)
        assert info.note
    else:
        assert info.trusted is True, info.note
        assert info.reset_at == expected
        assert info.reset_at.utcoffset() == timedelta(0)


def test_parse_reset__untrusted_keeps_what_it_read():
    now = utc(2026, 12, 1)
    info = parse_reset("You're out of extra usage · resets Apr 24, 4am (Asia/Tokyo)", now)
    assert info.parsed == utc(2027, 4, 23, 19, 0)
    assert "more than 32 days" in info.note
    past = parse_reset("Claude AI usage limit reached|1762952400", utc(2025, 11, 13))
    assert past.parsed == utc(2025, 11, 12, 13, 0)
    assert "not after now" in past.note


def test_parse_reset__zone_defaults_to_operator_setting(settings):
    settings.DRAINS_OPERATOR_TZ = "Europe/London"
    # 1am BST on 2 July is 00:00Z; Jerusalem's 1am would have been 22:00Z on 1 July.
    info = parse_reset("5-hour limit reached ∙ resets 1am", utc(2026, 7, 1, 12, 0))
    assert info.reset_at == utc(2026, 7, 2, 0, 0)


def test_parse_reset__fallback_follows_setting(settings):
    settings.DRAINS_FALLBACK_BACKOFF_SECONDS = 60
    info = parse_reset("no idea", utc(2026, 1, 1))
    assert info.reset_at == utc(2026, 1, 1, 0, 1)
    assert info.source == "fallback"


def test_parse_reset__32_days_is_the_bound():
    now = utc(2026, 1, 1)
    inside = parse_reset("You will regain access on 2026-02-02 at 00:00 UTC.", now)
    outside = parse_reset("You will regain access on 2026-02-02 at 00:01 UTC.", now)
    assert inside.trusted and inside.reset_at == utc(2026, 2, 2)
    assert not outside.trusted


def test_parse_reset__rejects_naive_now():
    with pytest.raises(ValueError):
        parse_reset("resets 1am", datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def test_rate_limited_keeps_raw_message_and_verdict():
    info = parse_reset("garbage", utc(2026, 1, 1))
    exc = info.rate_limited()
    assert isinstance(exc, RateLimited)
    assert exc.trusted is False and exc.info is info
    assert exc.reset_at == info.reset_at
    assert exc.message.startswith("garbage") and "not trusted" in exc.message
    good = parse_reset("resets in 2h", utc(2026, 1, 1)).rate_limited("HTTP 429")
    assert good.trusted and good.message == "HTTP 429"


def test_next_wall_clock__leap_day_skips_common_years():
    moment = next_wall_clock(utc(2026, 3, 1), ZoneInfo("UTC"), _time(9, 0), month=2, day=29)
    assert moment == utc(2028, 2, 29, 9, 0)


# --- headers --------------------------------------------------------------------------------

HEADER_CASES = [
    ("retry-after-seconds", {"retry-after": "30"}, utc(2026, 2, 1, 12, 0), utc(2026, 2, 1, 12, 0, 30)),
    ("retry-after-http-date", {"Retry-After": "Wed, 02 Dec 2026 16:00:00 GMT"},
     utc(2026, 12, 2, 15, 0), utc(2026, 12, 2, 16, 0)),
    ("retry-after-ms-first", {"retry-after-ms": "1500", "retry-after": "30"},
     utc(2026, 2, 1, 12, 0), utc(2026, 2, 1, 12, 0, 1, 500000)),
    ("resets-latest", {
        "anthropic-ratelimit-requests-reset": "2025-02-24T22:25:30Z",
        "anthropic-ratelimit-tokens-reset": "2025-02-24T22:25:32Z",
    }, utc(2025, 2, 24, 22, 25), utc(2025, 2, 24, 22, 25, 32)),
    ("resets-only-exhausted", {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-02-24T22:25:30Z",
        "anthropic-ratelimit-tokens-remaining": "18000",
        "anthropic-ratelimit-tokens-reset": "2025-02-24T22:26:00Z",
    }, utc(2025, 2, 24, 22, 25), utc(2025, 2, 24, 22, 25, 30)),
    ("resets-input-output", {
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": "2025-02-24T22:25:40Z",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": "2025-02-24T22:25:45Z",
    }, utc(2025, 2, 24, 22, 25), utc(2025, 2, 24, 22, 25, 45)),
    ("unified", {
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": "1770685200",
    }, utc(2026, 2, 9, 22, 0), utc(2026, 2, 10, 1, 0)),
    ("retry-after-over-resets", {
        "retry-after": "20",
        "anthropic-ratelimit-tokens-reset": "2025-02-24T22:26:00Z",
    }, utc(2025, 2, 24, 22, 25), utc(2025, 2, 24, 22, 25, 20)),
    # A stale retry-after date is skipped for the next trusted source.
    ("stale-retry-after-then-reset", {
        "retry-after": "Mon, 24 Feb 2025 22:00:00 GMT",
        "anthropic-ratelimit-tokens-reset": "2025-02-24T22:26:00Z",
    }, utc(2025, 2, 24, 22, 25), utc(2025, 2, 24, 22, 26)),
    ("nothing", {"content-type": "application/json"}, utc(2026, 1, 1), FALLBACK),
    ("unreadable", {"retry-after": "soon"}, utc(2026, 1, 1), FALLBACK),
    ("all-in-past", {"anthropic-ratelimit-tokens-reset": "2025-02-24T22:00:00Z"}, utc(2025, 2, 24, 23, 0), FALLBACK),
]


@pytest.mark.parametrize(
    ("headers", "now", "expected"), [c[1:] for c in HEADER_CASES], ids=[c[0] for c in HEADER_CASES]
)
def test_parse_reset_headers(headers, now, expected, settings):
    settings.DRAINS_FALLBACK_BACKOFF_SECONDS = 900
    with freeze_time(now):
        info = parse_reset_headers(headers)
    if expected is FALLBACK:
        assert not info.trusted
        assert info.reset_at == now + timedelta(seconds=900)
    else:
        assert info.trusted, info.note
        assert info.reset_at == expected


def test_parse_reset_headers__raw_lists_the_rate_limit_headers():
    info = parse_reset_headers(
        {"Retry-After": "30", "content-type": "application/json", "anthropic-ratelimit-unified-status": "rejected"},
        utc(2026, 1, 1),
    )
    assert info.raw == "anthropic-ratelimit-unified-status: rejected; retry-after: 30"


# --- recognising a limit --------------------------------------------------------------------


@pytest.mark.parametrize("message", [c[1] for c in TEXT_CASES if c[0].startswith(("epoch", "reset-at", "5h", "weekly", "v2", "v21"))])
def test_is_limit_message__every_cli_form(message):
    assert is_limit_message(message)


@pytest.mark.parametrize("message", ["", "Error: ENOENT", "Traceback (most recent call last):", "{not json"])
def test_is_limit_message__other_failures(message):
    assert not is_limit_message(message)


# --- the samples file itself ----------------------------------------------------------------

# A checked-in copy of the team's samples file (shared/samples/rate-limits.md), so that CI on a
# bare clone checks the table against it too.
SAMPLES = Path(__file__).resolve().parents[3] / "docs" / "rate-limits.md"


def test_every_sample_line_is_in_the_table():
    """Every message line in the samples file's code blocks appears verbatim in TEXT_CASES."""
    blocks = re.findall(r"```\n(.*?)```", SAMPLES.read_text(encoding="utf-8"), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    table = {c[1].strip() for c in TEXT_CASES}
    # The two result objects are abbreviated ("...") in the file; compare by their distinctive part.
    missing = [
        line for line in lines
        if line not in table and not any(_same_shape(line, known) for known in table)
    ]
    assert lines and not missing, missing


def _same_shape(line: str, known: str) -> bool:
    if not line.startswith("{"):
        return False
    marker = re.sub(r'"(?:usage|session_id|request_id)".*', "", line)
    return known.startswith(marker[: len(marker) - 1])


# --- a property over every zone the samples name, and any moment --------------------------

SAMPLE_ZONES = [
    "Asia/Jerusalem", "Europe/London", "Europe/Warsaw", "Etc/GMT+5", "America/Bogota",
    "America/Chicago", "Pacific/Auckland", "Europe/Moscow", "Europe/Lisbon", "America/Toronto",
    "Asia/Shanghai", "America/Recife", "America/Los_Angeles", "America/Detroit", "Asia/Tokyo",
    "America/New_York",
]  # fmt: skip


@hypothesis_settings(max_examples=300, deadline=None, database=None)
@given(
    now=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)),  # noqa: DTZ001
    zone=st.sampled_from(SAMPLE_ZONES),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 20, 30, 50, 59]),
)
def test_next_wall_clock__is_the_first_later_moment_showing_that_time(now, zone, hour, minute):
    now = now.replace(tzinfo=UTC)
    tz = ZoneInfo(zone)
    moment = next_wall_clock(now, tz, _time(hour, minute))
    assert moment is not None and now < moment <= now + timedelta(hours=26)
    local = moment.astimezone(tz)
    if (local.hour, local.minute) != (hour, minute):
        # Only when that time does not exist that day (a spring-forward gap): then it is the
        # moment just past the gap, and the wall time an hour before it is the one asked for.
        before = (moment - timedelta(hours=1)).astimezone(tz)
        assert local.utcoffset() > before.utcoffset()
        assert ((local.hour - 1) % 24, local.minute) == (hour, minute)
    # No earlier moment after now shows that wall time (every zone here is on whole minutes).
    probe = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while probe < moment:
        shown = probe.astimezone(tz)
        assert (shown.hour, shown.minute) != (hour, minute), probe
        probe += timedelta(minutes=1)


# --- which limit: the kind beside the reset -----------------------------------------------------

# Every text case above, with the kind (and model) the message reports. Worked out from the
# words of each sample and the window names in the samples file, not read back from the parser.
S, W, WM, X, SC, U = "session", "weekly", "weekly_model", "extra_usage", "spend_cap", "unknown"
KIND_BY_CASE = {
    "epoch-1": U, "epoch-2": U, "epoch-ms": U, "epoch-in-past": U,  # "usage limit reached": no window
    "reset-at-warsaw": U, "reset-at-etc-gmt+5": U, "reset-at-bogota": U, "reset-at-chicago-dst": U,
    "5h-1am": S, "5h-5am-jerusalem-dst": S, "weekly-date-no-zone": (WM, "opus"),
    "v2-auckland-dst-end": S, "v2-moscow-date": W,
    "v21-lisbon-dst-end": U, "v21-toronto": U, "v21-moscow-minutes": U, "v21-shanghai-exactly-now": U,
    "v21-recife-date-at": U, "v21-session-la": S, "v21-weekly-detroit": W,
    "v21-extra-usage-tokyo": X, "v21-extra-usage-next-year": X,
    "relative-2h": U, "relative-2h30m": S, "usage-screen": U, "usage-screen-new-year": U,
    "stream-json-event": S, "json-result-epoch": U, "json-result-success-no-reset": U,
    "api-429-body": U, "api-spend-limit": SC,
    "jerusalem-spring-gap": S, "jerusalem-fall-first": S, "jerusalem-fall-second": S,
    "london-3pm-across-spring": U, "london-spring-gap": U, "london-fall-first": U, "london-fall-second": U,
    "unknown-zone": U, "not-a-clock": U, "spend-limit-too-far": SC, "garbage": U, "empty": U,
}


def _kind_of(expected) -> tuple[str, str]:
    return expected if isinstance(expected, tuple) else (expected, "")


def test_every_text_case_has_its_kind():
    assert sorted(KIND_BY_CASE) == sorted(case[0] for case in TEXT_CASES)


@pytest.mark.parametrize(("case", "message", "now"), [(c[0], c[1], c[2]) for c in TEXT_CASES],
                         ids=[c[0] for c in TEXT_CASES])
def test_parse_reset__every_sample_has_its_kind(case, message, now):
    info = parse_reset(message, now)
    assert (info.kind.kind, info.kind.model) == _kind_of(KIND_BY_CASE[case])
    # and the signal the runtime gets carries it
    assert info.rate_limited().kind == info.kind


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # the real CLI (2.1.332, API key) on a 429: no window named
        ('{"type":"result","subtype":"success","is_error":true,"api_error_status":429,'
         '"api_error_type":"rate_limit_error","result":"API Error: Request rejected (429) · This '
         "request would exceed your account's rate limit. Please try again later.\"}", U),
        ('{"type":"result","is_error":true,"api_error_status":529,"api_error_type":"overloaded_error",'
         '"result":"API Error: Repeated 529 Overloaded errors"}', "overloaded"),
        ('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "overloaded"),
        ('{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1774447200,'
         '"rateLimitType":"seven_day"}}', W),
        ('{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1774447200,'
         '"rateLimitType":"seven_day_opus"}}', (WM, "opus")),
        ('{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1774447200,'
         '"rateLimitType":"overage"}}', X),
        ("Sonnet weekly limit reached · resets Dec 2, 7pm", (WM, "sonnet")),
        # a decision that quotes a limit inside a successful answer is not read here at all (the
        # backends ask only failures), but its words alone name no window
        ("the court found the limit reached by the tenant", U),
    ],
)
def test_classify_text__json_stream_and_model_forms(message, expected):
    from drains.quota.kinds import classify_text

    kind = classify_text(message)
    assert (kind.kind, kind.model) == _kind_of(expected)


@pytest.mark.parametrize(
    ("headers", "status", "expected"),
    [
        ({"retry-after": "30"}, 429, U),
        ({}, 529, "overloaded"),
        ({"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset":
          "2025-02-24T22:25:30Z", "retry-after": "30"}, 429, "api_requests"),
        ({"anthropic-ratelimit-requests-remaining": "12", "anthropic-ratelimit-input-tokens-remaining":
          "0"}, 429, "api_input_tokens"),
        ({"anthropic-ratelimit-output-tokens-remaining": "0"}, 429, "api_output_tokens"),
        ({"anthropic-ratelimit-unified-status": "rejected", "anthropic-ratelimit-unified-reset":
          "1770685200", "anthropic-ratelimit-unified-representative-claim": "five_hour"}, 429, S),
        ({"anthropic-ratelimit-unified-status": "rejected",
          "anthropic-ratelimit-unified-representative-claim": "seven_day_sonnet"}, 429, (WM, "sonnet")),
    ],
)
def test_parse_reset_headers__the_kind_from_status_and_headers(headers, status, expected):
    info = parse_reset_headers(headers, utc(2025, 2, 24, 22, 25), status=status)
    assert (info.kind.kind, info.kind.model) == _kind_of(expected)
