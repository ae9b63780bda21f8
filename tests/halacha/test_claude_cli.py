"""The ``claude-cli`` backend with a fake ``claude`` executable (tests/support/fake_claude).

The fake shows what the real CLI cannot offline: every subscription limit text, hangs, crashes.
What the real CLI sends and how it reports API errors is in test_claude_cli_real.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from datetime import UTC, date, datetime, timedelta

import psutil
import pytest
from django.core.management import CommandError, call_command
from freezegun import freeze_time

from drains.models import DrainRun, RunStatus
from drains.quota.resets import RateLimited
from halacha.extractors import get_extractor
from halacha.extractors.base import ExtractionError, HostFault
from halacha.extractors.claude_cli import ClaudeCliExtractor, CliConfigError, extra_args
from halacha.extractors.prompts import (
    METADATA_SYSTEM_PROMPT,
    SYSTEM_PROMPT,
    metadata_user_prompt,
    user_prompt,
)
from halacha.extractors.protocol import ask_halachot, ask_metadata
from halacha.models import CourtDecision
from tests.drains.quota.test_resets import FALLBACK, TEXT_CASES
from tests.support.db import ROOT
from tests.support.items import state

FAKE = ROOT / "tests" / "support" / "fake_claude" / "claude"
TEXT = (
    "Tel Aviv District Court\n\n"
    "The tenant said the monthly limit reached its cap. We hold that a landlord may not cut off "
    "water to force a tenant out. The appeal is dismissed."
)
QUOTE = "We hold that a landlord may not cut off water to force a tenant out."
RULE = "A landlord may not cut off water to force a tenant out."

# Every usage-limit form the CLI prints (docs/rate-limits.md), with a moment and its reset.
CLI_LIMITS = [
    case
    for case in TEXT_CASES
    if case[0].startswith(("epoch", "reset-at", "5h", "weekly", "v2", "v21", "relative"))
    and case[3] is not FALLBACK
    and case[0] != "v21-shanghai-exactly-now"  # the clock ticks in these tests: not "exactly"
]


@pytest.fixture
def decision():
    return CourtDecision(external_id="dc-1", text=TEXT, language="en")


@pytest.fixture
def cli(settings, monkeypatch, tmp_path):
    """The fake CLI, configured; returns a function that sets its behaviour."""
    settings.CLAUDE_CLI = str(FAKE)
    settings.CLAUDE_CONFIG_DIR = None
    settings.HALACHA_CLI_TIMEOUT_SECONDS = 20
    settings.HALACHA_CLI_MODEL = "sonnet"
    settings.HALACHA_CLI_EXTRA_ARGS = ""
    settings.DRAINS_OPERATOR_TZ = "Asia/Jerusalem"
    settings.DRAINS_FALLBACK_BACKOFF_SECONDS = 900
    for name in list(os.environ):
        if name.startswith("FAKE_CLAUDE_"):
            monkeypatch.delenv(name)
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv("FAKE_CLAUDE_RECORD", str(record))

    def behave(**env):
        for name, value in env.items():
            monkeypatch.setenv(f"FAKE_CLAUDE_{name.upper()}", str(value))
        return record

    return behave


def reply(*items) -> str:
    return json.dumps({"halachot": [dict(rule=r, quote=q, topics=t) for r, q, t in items]})


def test_success(cli, decision):
    record = cli(result=reply((RULE, QUOTE, ["property"])))
    result = ask_halachot(ClaudeCliExtractor(), decision)
    assert [(h.rule, h.quote) for h in result.halachot] == [(RULE, QUOTE)]
    assert result.usage == {
        "input_tokens": 2100,
        "output_tokens": 140,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1800,
        "cost_usd": 0.024,
        "model_usage": {
            "claude-sonnet-4-6": {
                "calls": 1,
                "input_tokens": 2100,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "quotes_exact": 1,
            }
        },
    }
    assert (result.extractor, result.model) == ("claude-cli", "claude-sonnet-4-6")
    assert result.raw["session_id"] == "fake-session"

    argv = json.loads((record / "argv.json").read_text())
    prompt_file = argv[argv.index("--system-prompt-file") + 1]
    assert argv == [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--system-prompt-file",
        prompt_file,
        "--tools",
        "",
        "--max-turns",
        "1",
        "--model",
        "sonnet",
        "--no-session-persistence",
        "--strict-mcp-config",
        "--setting-sources",
        "",
        "--disable-slash-commands",
    ]
    # The instructions are the system prompt; only the decision goes on stdin.
    assert (record / "system-prompt.txt").read_text(encoding="utf-8") == SYSTEM_PROMPT
    assert (record / "stdin.txt").read_text(encoding="utf-8") == user_prompt(decision)
    # An empty scratch folder, not the project's, removed afterwards with the prompt file.
    cwd = json.loads((record / "cwd.json").read_text())
    assert cwd["entries"] == [] and cwd["cwd"] != os.getcwd()
    assert not os.path.exists(cwd["cwd"]) and not os.path.exists(prompt_file)
    assert json.loads((record / "env.json").read_text()) == {
        "CLAUDE_CONFIG_DIR": None,
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def test_model_and_extra_args_from_settings(cli, decision, settings, monkeypatch):
    settings.HALACHA_CLI_MODEL = "claude-haiku-4-5"
    settings.HALACHA_CLI_EXTRA_ARGS = "--effort low --betas a b --verbose"
    monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "2")  # the operator's own setting wins
    record = cli(result=reply())
    ask_halachot(ClaudeCliExtractor(), decision)
    argv = json.loads((record / "argv.json").read_text())
    assert argv[argv.index("--model") + 1] == "claude-haiku-4-5"
    assert argv[-6:] == ["--effort", "low", "--betas", "a", "b", "--verbose"]
    assert json.loads((record / "env.json").read_text())["CLAUDE_CODE_MAX_RETRIES"] == "2"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('--tools "Bash"', "--tools could give the model tools"),
        ("--tools=default", "--tools could give the model tools"),
        ("--allowedTools Bash", "--allowedTools could give the model tools"),
        ("--mcp-config servers.json", "--mcp-config could give the model tools"),
        ("--settings '{\"permissions\": {}}'", "--settings could give the model tools"),
        ("--setting-sources user,project", "--setting-sources could give the model tools"),
        ("--permission-mode bypassPermissions", "--permission-mode could give"),
        ("--dangerously-skip-permissions", "--dangerously-skip-permissions could give"),
        ("--json-schema {}", "--json-schema adds a StructuredOutput tool"),
        ("--model opus", "--model is set by HALACHA_CLI_MODEL"),
        ("--system-prompt hi", "--system-prompt is set by the backend"),
        ("--frobnicate", "--frobnicate is not among the flags known to keep the call tool-less"),
        ("--effort", "--effort needs a value"),
        ("stray words", "'stray' is not a flag nor the value of one"),
        ('--effort "low', "cannot be split"),
    ],
)
def test_extra_args_that_could_enable_tools_are_refused(cli, decision, settings, extra, message):
    settings.HALACHA_CLI_EXTRA_ARGS = extra
    record = cli(result=reply())
    with pytest.raises(CliConfigError, match="HALACHA_CLI_EXTRA_ARGS") as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (record / "argv.json").exists()  # refused before the CLI ever ran


def test_extra_args_accepted_forms():
    assert extra_args("") == []
    assert extra_args("--effort=low --max-budget-usd 0.5 --bare") == [
        "--effort=low",
        "--max-budget-usd",
        "0.5",
        "--bare",
    ]


@pytest.mark.parametrize("model", ["", "  ", "--tools"])
def test_unusable_model_is_refused(cli, decision, settings, model):
    settings.HALACHA_CLI_MODEL = model
    with pytest.raises(CliConfigError, match="HALACHA_CLI_MODEL"):
        ask_halachot(ClaudeCliExtractor(), decision)


def test_success_with_fenced_reply_and_a_fabricated_quote(cli, decision):
    cli(
        result="```json\n"
        + reply((RULE, QUOTE, []), ("Made up.", "We hold that nothing.", []))
        + "\n```"
    )
    result = ask_halachot(ClaudeCliExtractor(), decision)
    assert len(result.halachot) == 1 and result.rejected == 1


def test_successful_answer_mentioning_a_limit_is_not_a_rate_limit(cli):
    text = "The contract said: Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw)."
    quote = "Your limit will reset at 5pm (Europe/Warsaw)."
    decision = CourtDecision(external_id="q", text=text)
    cli(result=reply(("A quoted notice is just text.", quote, [])))
    result = ask_halachot(ClaudeCliExtractor(), decision)
    assert len(result.halachot) == 1  # read as an answer, not as a limit


@pytest.mark.parametrize(
    ("message", "now", "expected"), [c[1:] for c in CLI_LIMITS], ids=[c[0] for c in CLI_LIMITS]
)
@pytest.mark.parametrize("form", ["plain-text-exit-1", "json-is-error-exit-1", "json-429-exit-0"])
def test_usage_limit_in_every_sample_form(cli, decision, form, message, now, expected):
    if form == "plain-text-exit-1":
        cli(stdout=message, exit=1)
    elif form == "json-is-error-exit-1":
        cli(result=message, is_error=1, exit=1)
    else:
        cli(result=message, is_error=1, api_error_status=429)
    with freeze_time(now, tick=True), pytest.raises(RateLimited) as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert info.value.trusted, info.value.message
    if "resets in" in message:  # relative to a clock that ticked while the fake ran
        assert expected <= info.value.reset_at < expected + timedelta(seconds=30)
    else:
        assert info.value.reset_at == expected
    assert info.value.message == message.strip()  # the raw text is kept


def test_usage_limit_without_a_usable_reset_falls_back(cli, decision):
    cli(stdout="Claude AI usage limit reached", exit=1)
    with (
        freeze_time(datetime(2026, 1, 1, tzinfo=UTC), tick=True),
        pytest.raises(RateLimited) as info,
    ):
        ask_halachot(ClaudeCliExtractor(), decision)
    assert info.value.trusted is False
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=900)
    assert start <= info.value.reset_at < start + timedelta(seconds=60)
    assert info.value.message.startswith("Claude AI usage limit reached")


def test_limit_printed_on_stderr(cli, decision):
    cli(stdout="", stderr="You've hit your limit · resets in 2h", exit=1)
    with (
        freeze_time(datetime(2026, 5, 5, 10, tzinfo=UTC), tick=True),
        pytest.raises(RateLimited) as info,
    ):
        ask_halachot(ClaudeCliExtractor(), decision)
    assert info.value.reset_at - datetime(2026, 5, 5, 12, tzinfo=UTC) < timedelta(seconds=30)


def test_429_without_limit_wording(cli, decision):
    cli(
        result='API Error: 429 {"type":"error","error":{"type":"rate_limit_error"}}',
        is_error=1,
        api_error_status=429,
    )
    with pytest.raises(RateLimited) as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert info.value.trusted is False  # nothing says when: the bounded fallback


def test_non_zero_exit_carries_stderr(cli, decision):
    cli(stdout="", stderr="Error: something broke in the CLI", exit=1)
    with pytest.raises(ExtractionError) as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert not isinstance(info.value, RateLimited)
    assert "exited with status 1" in str(info.value)
    assert "something broke" in str(info.value)


@pytest.mark.parametrize(
    "notice",
    ["Error: Invalid API key · Please run /login", "Not logged in · Please run /login",
     "OAuth token has expired. Please obtain a new token or refresh your existing token."],
)
def test_a_login_notice_is_a_host_fault_with_what_to_do(cli, decision, notice):
    cli(stdout="", stderr=notice, exit=1)
    with pytest.raises(HostFault) as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert notice.split(" · ")[0].split(".")[0] in info.value.fault
    assert "claude setup-token" in info.value.advice and "/login" in info.value.advice


def test_error_result_that_is_not_a_limit(cli, decision):
    cli(result="API Error: 400 the request was malformed", is_error=1, exit=1, stderr="trace here")
    with pytest.raises(ExtractionError) as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert not isinstance(info.value, RateLimited)
    assert "API Error: 400" in str(info.value) and "trace here" in str(info.value)


@pytest.mark.parametrize(("api_status", "words"), [(500, "failed with HTTP 500"),
                                                   (401, "refused the login (HTTP 401)")])
def test_an_error_result_of_the_service_is_a_host_fault(cli, decision, api_status, words):
    cli(result=f"API Error: {api_status} boom", is_error=1, exit=1,
        api_error_status=api_status)
    with pytest.raises(HostFault) as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert words in info.value.fault and "boom" in info.value.fault


def test_garbage_on_stdout(cli, decision):
    cli(stdout="\x1b[31m???? segmentation fault ????")
    with pytest.raises(ExtractionError, match="not its JSON result") as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert not isinstance(info.value, RateLimited)


def test_result_that_is_not_the_json_asked_for(cli, decision):
    cli(result="Sure! Here are the rules: none.")
    with pytest.raises(ExtractionError, match="not JSON") as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert info.value.usage["cost_usd"] == 0.024  # paid for, and said so


def test_hang_past_the_timeout_is_killed_without_a_zombie(cli, decision, settings):
    # 5 s, not 1: the fake must have written its pid and started its grandchild before it is
    # killed, and beside the suite's process storms a Python start took over a second in CI.
    settings.HALACHA_CLI_TIMEOUT_SECONDS = 5
    record = cli(hang=60, grandchild=1, result=reply())
    started = time.monotonic()
    with pytest.raises(ExtractionError, match="did not answer within 5s") as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    elapsed = time.monotonic() - started
    assert elapsed < 15, elapsed
    assert not isinstance(info.value, RateLimited)

    pid = int((record / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: a zombie would still answer signal 0
    grandchild = int((record / "grandchild").read_text())
    deadline = time.monotonic() + 5
    while psutil.pid_exists(grandchild) and time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break  # killed; waiting for init to reap it, which is not ours to do
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    assert (
        not psutil.pid_exists(grandchild)
        or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    )


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGSEGV])
def test_a_cli_killed_from_outside_is_a_host_fault(cli, decision, number):
    cli(signal=int(number), stderr="partial output")
    with pytest.raises(HostFault, match=f"killed by {number.name} mid-call") as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert "OOM killer" in info.value.advice


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_cli_stopped_with_its_drain_is_no_host_fault(cli, decision, number):
    """systemd stopping the scheduler's cgroup, Ctrl-C: the drain stops too; no block is written
    on the whole quota for it."""
    cli(signal=int(number))
    with pytest.raises(ExtractionError, match=f"exited with status -{int(number)}"):
        ask_halachot(ClaudeCliExtractor(), decision)


def test_missing_executable_is_a_host_fault(settings, decision, tmp_path):
    settings.CLAUDE_CLI = str(tmp_path / "no-such-claude")
    with pytest.raises(HostFault, match="cannot run the Claude CLI .*No such file") as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    assert "set CLAUDE_CLI to its path" in info.value.advice
    assert str(tmp_path / "no-such-claude") in info.value.advice


def test_quota_key_and_config_dir(cli, decision, settings, tmp_path):
    assert ClaudeCliExtractor().quota_key() == f"claude-cli:{FAKE}"
    settings.CLAUDE_CONFIG_DIR = str(tmp_path / "account-b")
    assert ClaudeCliExtractor().quota_key() == f"claude-cli:{FAKE}:{tmp_path / 'account-b'}"
    record = cli(result=reply())
    ask_halachot(ClaudeCliExtractor(), decision)
    assert json.loads((record / "env.json").read_text())["CLAUDE_CONFIG_DIR"] == str(
        tmp_path / "account-b"
    )
    assert isinstance(get_extractor("claude-cli"), ClaudeCliExtractor)


def test_quota_key_resolves_the_path(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE.parent}{os.pathsep}{os.environ['PATH']}")
    settings.CLAUDE_CLI = "claude"
    settings.CLAUDE_CONFIG_DIR = None
    assert ClaudeCliExtractor().quota_key() == f"claude-cli:{FAKE}"


def test_extract_metadata(cli, decision):
    record = cli(
        result=json.dumps(
            {
                "court": "Tel Aviv District Court",
                "case_number": None,
                "decided_on": "2024-01-18",
                "judges": ["Ronit Shapira"],
                "parties": [],
            }
        )
    )
    meta = ask_metadata(ClaudeCliExtractor(), decision)
    assert (meta.court, meta.case_number, meta.decided_on) == (
        "Tel Aviv District Court",
        None,
        date(2024, 1, 18),
    )
    assert meta.judges == ["Ronit Shapira"] and meta.usage["cost_usd"] == 0.024
    assert (record / "system-prompt.txt").read_text(encoding="utf-8") == METADATA_SYSTEM_PROMPT
    assert (record / "stdin.txt").read_text(encoding="utf-8") == metadata_user_prompt(decision)


@pytest.mark.django_db(transaction=True)
def test_a_refused_extra_arg_fails_the_drain_run_without_spending_a_decisions_attempts(
    cli, settings
):
    settings.HALACHA_EXTRACTOR = "claude-cli"
    settings.HALACHA_CLI_EXTRA_ARGS = "--allowedTools Bash"
    record = cli(result=reply())
    decision = CourtDecision.objects.create(external_id="cfg-1", text=TEXT, language="en")
    with pytest.raises(CommandError, match="HALACHA_CLI_EXTRA_ARGS: --allowedTools could give"):
        call_command(
            "drain_halacha", "--trigger", "manual", stdout=io.StringIO(), stderr=io.StringIO()
        )
    run = DrainRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert "HALACHA_CLI_EXTRA_ARGS: --allowedTools could give the model tools" in run.error
    assert state("halacha", decision) == ("pending", 0, "")
    assert not (record / "argv.json").exists()


# --- the quota signal in stream-json: captured lines of older CLIs, and bad values ------------

WEEK_RESET = int((datetime.now(UTC) + timedelta(days=3)).timestamp())
# CLI versions before unifiedWindows (2.1.207 and earlier): the top level only, near the limit.
OLDER_WARNING = json.dumps({"type": "rate_limit_event", "rate_limit_info": {
    "status": "allowed_warning", "resetsAt": WEEK_RESET, "rateLimitType": "seven_day",
    "utilization": 0.91, "isUsingOverage": False}, "uuid": "u1", "session_id": "s"})
OLDER_ALLOWED = json.dumps({"type": "rate_limit_event", "rate_limit_info": {
    "status": "allowed", "resetsAt": WEEK_RESET, "rateLimitType": "five_hour",
    "isUsingOverage": False}, "uuid": "u0", "session_id": "s"})


def test_older_shape_event_read_beside_the_result(cli, decision):
    cli(result=reply((RULE, QUOTE, ["property"])), events=OLDER_ALLOWED + "\n" + OLDER_WARNING)
    result = ask_halachot(ClaudeCliExtractor(), decision)
    assert [h.quote for h in result.halachot] == [QUOTE]
    (reading,) = result.quota.windows  # the allowed event carries no figure: nothing from it
    assert (reading.window, reading.utilization, reading.status) == (
        "seven_day", 0.91, "allowed_warning")
    assert reading.resets_at == datetime.fromtimestamp(WEEK_RESET, UTC)


def test_refused_with_the_integer_one(cli, decision):
    refused = json.dumps({"type": "rate_limit_event", "rate_limit_info": {
        "status": "rejected", "resetsAt": WEEK_RESET, "rateLimitType": "seven_day",
        "utilization": 1, "isUsingOverage": False}})
    cli(result="You've hit your weekly limit · resets Dec 4, 5pm", is_error=1, exit=1,
        events=refused)
    with pytest.raises(RateLimited) as info:
        ask_halachot(ClaudeCliExtractor(), decision)
    (reading,) = info.value.quota.windows
    assert reading.utilization == 1.0 and reading.status == "rejected"
    assert info.value.kind.kind == "weekly"


@pytest.mark.django_db(transaction=True)
def test_bad_values_are_ignored_with_a_warning_in_the_runs_log(cli, settings, caplog):
    settings.HALACHA_EXTRACTOR = "claude-cli"
    bad = json.dumps({"type": "rate_limit_event", "rate_limit_info": {
        "status": "allowed", "unifiedWindows": {
            "five_hour": {"utilization": "most", "resetsAt": WEEK_RESET},
            "seven_day": {"utilization": 0.4, "resetsAt": 17},
        }}})
    cli(result=reply((RULE, QUOTE, ["property"])), events=bad)
    CourtDecision.objects.create(external_id="q-1", text=TEXT, language="en")
    with caplog.at_level("WARNING"):
        call_command("drain_halacha", "--trigger", "manual", stdout=io.StringIO(),
                     stderr=io.StringIO())
    run = DrainRun.objects.get()
    assert run.status == RunStatus.SUCCEEDED and run.items_done == 1  # never a crash
    logged = caplog.text
    assert "five_hour utilization 'most' is not a number; ignored" in logged
    assert "seven_day reset 17 is not a plausible epoch" in logged
    from drains.quota.models import QuotaWindow

    # Only the good figure is stored, without the implausible reset: never a wrong ceiling.
    (row,) = QuotaWindow.objects.all()
    assert (row.window, row.utilization, row.resets_at) == ("seven_day", 0.4, None)
    assert row.quota_key == ClaudeCliExtractor().quota_key()
