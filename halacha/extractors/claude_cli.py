"""The ``claude-cli`` backend: the Claude CLI in headless mode, as a plain model call.

Claude Code is an agent: called bare (``claude -p``) it sends its whole agent system prompt and a
dozen tool definitions (Bash, Read, Write, Edit, ...) with every request, about 47 KB, on the most
expensive default model, from the project's folder. A court decision is untrusted text, so this
backend runs the CLI as a lean, tool-less model call instead. Every flag, and why:

``-p --output-format stream-json --verbose``
    Headless; one JSON object a line on stdout, the last the result object (result text, usage,
    ``total_cost_usd``, ``modelUsage``). Before it, logged in as a subscriber, the CLI prints a
    ``rate_limit_event`` on every call: the 5-hour and weekly windows' utilization and resets
    (read by drains.quota.signals.from_stream_event into the result's or the exception's
    ``quota``). With ``--output-format json`` that event is never printed; ``--verbose`` is what
    stream-json requires with ``-p``. It adds nothing to the request, only lines to stdout. The
    single JSON object of ``json`` and the plain text of older CLIs are still read.
``--system-prompt-file <file>``
    The extraction (or metadata) instructions are the system prompt, replacing Claude Code's
    agent prompt; the decision alone goes on standard input as the user message. A file, not an
    argument, so the prompt does not show in process listings.
``--tools ""``
    No built-in tools: the request carries none, so a decision that says "run this command" has
    nothing to call. A reply that asks for a tool anyway finds none.
``--max-turns 1``
    One model request per call: a reply that asks for a tool ends the call as an error instead of
    a second, paid, request.
``--model <HALACHA_CLI_MODEL>``
    The CLI's default is the most expensive model (and its own weekly limit); extraction runs on
    the model named here, a Sonnet alias by default.
``--no-session-persistence``
    No session transcript written for every call.
``--strict-mcp-config``
    No MCP servers (none are given with ``--mcp-config``), whatever the account configured.
``--setting-sources ""``
    No user, project or local settings: no hooks, permissions, env or tools from settings files.
``--disable-slash-commands``
    No skills or commands loaded.

The CLI runs in a fresh, empty temporary folder (removed afterwards), so it discovers no project
files (CLAUDE.md, .claude/, .mcp.json) and the request names nothing of the project. Its
environment adds, unless the operator set them: ``CLAUDE_CODE_MAX_RETRIES=0`` (the drain owns
backoff, as with the SDK's ``max_retries=0``; the CLI would otherwise retry a 529 for minutes),
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` and ``DISABLE_AUTOUPDATER=1`` (a cron job neither
phones home nor updates itself mid-run); its ``TMPDIR`` is inside the scratch folder too (it
leaves a probe folder in /tmp on every call otherwise). ``CLAUDE_CONFIG_DIR`` picks the account.

Not used, on purpose: ``--bare`` (it turns off OAuth, i.e. subscription login, and the bursts spend
subscription quota), and ``--json-schema``: the CLI implements it as a ``StructuredOutput`` tool
plus a placeholder tool in every request, and a reply in plain text costs a second request. The
schema is spelled out in the system prompt and every reply goes through protocol's validator.

``HALACHA_CLI_EXTRA_ARGS`` adds flags (shell syntax). Only flags known to leave the call tool-less
are accepted; one that could bring tools back (``--tools``, ``--allowedTools``, ``--mcp-config``,
``--settings``, ``--permission-mode``, ...) or that the backend sets itself is refused with a
``CliConfigError`` that stops the run (never a silent change of what the model may do).

A reply is a usage limit only when the CLI says it failed — ``is_error`` true, ``api_error_status``
429, or a non-zero exit — and its text is a limit notice; then it becomes ``RateLimited`` with the
reset read by drains.quota.resets. Text inside a successful answer is never read as a limit (a
decision may well say "limit reached"). API status 529 (overloaded) is ``RateLimited`` of kind
``overloaded``, which the runtime retries inside the run. A fault of the host or the service (no
start, a kill, a refused login, a 5xx) is a ``HostFault`` (halacha/extractors/faults.py). Every
other failure is an ``ExtractionError`` with stderr. The call is killed (its whole process
group, then reaped) after HALACHA_CLI_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from drains.quota.kinds import LimitKind
from drains.quota.resets import RateLimited, is_limit_message, overloaded, parse_reset
from drains.quota.signals import QuotaSignal, combine, from_stream_event
from halacha.extractors.base import (
    ExtractionError,
    Extractor,
    ModelCall,
    ModelReply,
    usage_from,
)
from halacha.extractors.child import die_with_parent
from halacha.extractors.cli_args import (  # noqa: F401  (re-exported: the backend's public names)
    ALLOWED_EXTRA,
    CLI_ENV_DEFAULTS,
    REFUSED_EXTRA,
    CliConfigError,
    cli_args,
    extra_args,
)
from halacha.extractors.faults import (
    KILLED_BY_THE_HOST,
    LOGIN_ADVICE,
    cli_killed_fault,
    cli_start_fault,
    login_fault,
    service_fault,
)

EXCERPT = 2000
REAP_SECONDS = 5.0

def _tail(text: str, limit: int = EXCERPT) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _head(text: str, limit: int = 500) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit] + "…"


def _json_objects(stdout: str) -> list[dict]:
    """The JSON object(s) the CLI printed: one for ``json``, one a line for ``stream-json``."""
    text = stdout.strip()
    if not text:
        return []
    try:
        whole = json.loads(text)
        return [whole] if isinstance(whole, dict) else []
    except json.JSONDecodeError:
        pass
    objects = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            return []  # not JSON lines either: plain text
        if isinstance(value, dict):
            objects.append(value)
    return objects


def quota_of(objects: list[dict]) -> QuotaSignal:
    """Every ``rate_limit_event`` the call printed, as one signal (a later event wins)."""
    now = timezone.now()
    return combine(*(from_stream_event(obj, now=now) for obj in objects
                     if obj.get("type") == "rate_limit_event"))


_MODEL_USAGE_KEYS = {
    "inputTokens": "input_tokens",
    "outputTokens": "output_tokens",
    "cacheCreationInputTokens": "cache_creation_input_tokens",
    "cacheReadInputTokens": "cache_read_input_tokens",
}


def usage_of(result: dict) -> dict[str, Any]:
    """Usage, ``total_cost_usd`` and ``modelUsage`` (per model) of the CLI's result object."""
    usage = usage_from(
        result.get("usage") if isinstance(result.get("usage"), dict) else {},
        cost_usd=result.get("total_cost_usd"),
    )
    per_model = result.get("modelUsage")
    if isinstance(per_model, dict) and per_model:
        usage["model_usage"] = {}
        for model, spent in per_model.items():
            spent = spent if isinstance(spent, dict) else {}
            entry = {"calls": 1, **usage_from({k: spent.get(c) for c, k in _MODEL_USAGE_KEYS.items()})}
            if isinstance(spent.get("costUSD"), int | float):
                entry["cost_usd"] = float(spent["costUSD"])
            usage["model_usage"][str(model)] = entry
    return usage


@dataclass(frozen=True)
class CliAnswer:
    """A successful answer of the CLI as read: the result text, the result object, usage,
    the model it was spent on, and what the call's rate_limit_events said of the quota."""

    text: str
    result: dict[str, Any]
    usage: dict[str, Any]
    model: str
    quota: QuotaSignal


class ClaudeCliExtractor(Extractor):
    name = "claude-cli"
    model_setting = "HALACHA_CLI_MODEL"
    efforts = ("low", "medium", "high", "xhigh", "max")  # the CLI's --effort

    def executable(self) -> str:
        configured = settings.CLAUDE_CLI or "claude"
        return shutil.which(configured) or configured

    def quota_key(self) -> str:
        key = f"claude-cli:{self.executable()}"
        if settings.CLAUDE_CONFIG_DIR:
            key += f":{settings.CLAUDE_CONFIG_DIR}"
        return key

    # --- running the CLI ------------------------------------------------------------------

    def _env(self, tmp: Path) -> dict[str, str]:
        env = dict(os.environ)
        for name, value in CLI_ENV_DEFAULTS.items():
            env.setdefault(name, value)
        # The CLI leaves files in its temporary folder on every call (/tmp/claude-<uid>/...):
        # give it one inside the scratch folder, which goes with it.
        for name in ("TMPDIR", "CLAUDE_CODE_TMPDIR"):
            env[name] = str(tmp)
        if settings.CLAUDE_CONFIG_DIR:
            env["CLAUDE_CONFIG_DIR"] = settings.CLAUDE_CONFIG_DIR
        return env

    def command(self, *, system_prompt_file: str) -> list[str]:
        """The whole command line, or ``CliConfigError`` for a bad model or extra argument."""
        model = (self.model or "").strip()
        if not model or model.startswith("-"):
            raise CliConfigError(
                f"HALACHA_CLI_MODEL={self.model!r} is not a model; set an alias such as sonnet "
                "or a full model name"
            )
        return [
            self.executable(),
            *cli_args(model=model, system_prompt_file=system_prompt_file, extra=extra_args()),
            # The configured effort last: the CLI takes the last --effort it is given.
            *(["--effort", self.effort] if self.effort else []),
        ]

    def run(self, system_prompt: str, user: str) -> tuple[int, str, str]:
        """Run the CLI once: ``system_prompt`` as its system prompt, ``user`` on stdin.

        Returns (exit status, stdout, stderr). The CLI works in an empty temporary folder (and
        keeps its temporary files beside it) that is removed afterwards, whatever happens.
        """
        with tempfile.TemporaryDirectory(prefix="halacha-cli-") as scratch:
            prompt_file = Path(scratch) / "system-prompt.md"
            prompt_file.write_text(system_prompt, encoding="utf-8")
            workdir = Path(scratch) / "work"
            workdir.mkdir()
            tmp = Path(scratch) / "tmp"
            tmp.mkdir()
            command = self.command(system_prompt_file=str(prompt_file))
            return self._run_in(command, user, workdir, self._env(tmp))

    def _run_in(
        self, command: list[str], user: str, workdir: Path, env: dict[str, str]
    ) -> tuple[int, str, str]:
        executable = command[0]
        timeout = float(settings.HALACHA_CLI_TIMEOUT_SECONDS)
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                cwd=workdir,
                # Its own process group, so a timeout kills whatever the CLI started as well.
                start_new_session=True,
                # And it dies with the drain: kill -9 of the drain leaves no call running.
                preexec_fn=die_with_parent(),
            )
        except OSError as exc:  # missing, not executable, or the host out of memory or processes
            raise cli_start_fault(executable, exc) from exc
        try:
            stdout, stderr = process.communicate(user, timeout=timeout)
        except subprocess.TimeoutExpired:
            stdout, stderr = self._kill(process)
            raise ExtractionError(
                f"the Claude CLI did not answer within {timeout:g}s "
                f"(HALACHA_CLI_TIMEOUT_SECONDS) and was killed (pid {process.pid}); "
                f"stderr: {_tail(stderr) or '(empty)'}"
            ) from None
        except BaseException:
            self._kill(process)  # SIGTERM to the drain, Ctrl-C: never leave the CLI behind
            raise
        if -process.returncode in KILLED_BY_THE_HOST:  # the OOM killer, a kill -9: not the item's
            raise cli_killed_fault(-process.returncode, process.pid, _tail(stderr))
        return process.returncode, stdout or "", stderr or ""

    @staticmethod
    def _kill(process: subprocess.Popen) -> tuple[str, str]:
        """SIGKILL the CLI's process group and reap it, so no zombie is left."""
        with contextlib.suppress(ProcessLookupError):  # it may have ended on its own just now
            os.killpg(process.pid, signal.SIGKILL)
        try:
            stdout, stderr = process.communicate(timeout=REAP_SECONDS)
        except subprocess.TimeoutExpired:
            # A grandchild that left the group still holds the pipes: stop reading, but reap.
            process.kill()
            process.wait()
            stdout, stderr = "", ""
        return stdout or "", stderr or ""

    # --- reading the reply ------------------------------------------------------------------

    def _answer(self, system_prompt: str, user: str) -> CliAnswer:
        """A successful answer, or raise (the exception's ``quota`` what the call's
        rate_limit_events said)."""
        status, stdout, stderr = self.run(system_prompt, user)
        objects = _json_objects(stdout)
        quota = quota_of(objects)
        try:
            text, result, usage, model = self._read(status, stdout, stderr, objects)
        except (RateLimited, ExtractionError) as exc:
            exc.quota = quota
            raise
        return CliAnswer(text, result, usage, model, quota)

    def _read(
        self, status: int, stdout: str, stderr: str, objects: list[dict[str, Any]]
    ) -> tuple[str, dict[str, Any], dict[str, Any], str]:
        results = [o for o in objects if o.get("type") == "result"] or objects[-1:]
        if not results:
            self._plain_text_failure(status, stdout, stderr)
        result = results[-1]
        said_text = result.get("result")
        text = said_text if isinstance(said_text, str) else ""
        usage = usage_of(result)
        failed = bool(result.get("is_error")) or status != 0
        limited = result.get("api_error_status") == 429
        if failed or limited:
            if result.get("api_error_status") == 529:  # no limit: the runtime retries the call
                raise overloaded(f"the Claude CLI reported API status 529: {_head(text)}")
            if limited or is_limit_message(text):
                info = parse_reset(text)
                stream = self._stream_reset(objects)
                if stream is not None and not info.trusted and stream.trusted:
                    info = stream
                elif stream is not None and info.kind.kind == LimitKind.UNKNOWN:
                    info = replace(info, kind=stream.kind)  # the event names the window
                raise info.rate_limited(text)
            errors = result.get("errors")
            said = text or ("; ".join(map(str, errors)) if isinstance(errors, list) else "")
            api_status = result.get("api_error_status")
            fault = service_fault(
                api_status if isinstance(api_status, int) else None, _head(said),
                service="the API (through the Claude CLI)", login_advice=LOGIN_ADVICE,
            ) or (login_fault(said) if result.get("is_error") else None)  # not a model's words
            if fault is not None:
                raise fault
            subtype = result.get("subtype")
            raise ExtractionError(
                f"the Claude CLI reported an error (exit status {status}"
                f"{', API status ' + str(result['api_error_status']) if result.get('api_error_status') else ''}"
                f"{', ' + str(subtype) if subtype and subtype != 'success' else ''}"
                f"): {_head(said) or '(no text)'}; stderr: {_tail(stderr) or '(empty)'}",
                raw=result,
                usage=usage,
            )
        model_usage = result.get("modelUsage")
        model = next(iter(model_usage), "") if isinstance(model_usage, dict) else ""
        return text, result, usage, model or self.model

    @staticmethod
    def _stream_reset(objects: list[dict]):
        """The last rejected ``rate_limit_event`` (stream-json): its reset (an epoch) and its
        window (``rateLimitType``), as the one parser reads them."""
        for event in reversed(objects):
            info = event.get("rate_limit_info") if event.get("type") == "rate_limit_event" else None
            if isinstance(info, dict) and info.get("status") == "rejected":
                return parse_reset(json.dumps(event))
        return None

    @staticmethod
    def _plain_text_failure(status: int, stdout: str, stderr: str):
        """Output that is not the JSON result: a limit notice, a crash, or garbage."""
        combined = "\n".join(part.strip() for part in (stdout, stderr) if part.strip())
        # Older CLIs print the limit as plain text (exit 1); a short notice with exit 0 is
        # still a notice, not an answer, because an answer always comes as the JSON object.
        if is_limit_message(combined) and (status != 0 or len(combined) <= 300):
            raise parse_reset(combined).rate_limited(combined)
        if status != 0 and (fault := login_fault(combined)) is not None:
            raise fault
        if status != 0:
            raise ExtractionError(
                f"the Claude CLI exited with status {status}; stderr: {_tail(stderr) or '(empty)'}"
                f"; stdout: {_head(stdout) or '(empty)'}"
            )
        raise ExtractionError(
            f"the Claude CLI printed something that is not its JSON result: {_head(stdout)!r}"
            f"; stderr: {_tail(stderr) or '(empty)'}",
            raw=stdout,
        )

    def call(self, request: ModelCall) -> ModelReply:
        """One CLI call. The CLI is given no schema (its ``--json-schema`` costs tools and a
        second request, see above): a drain's system prompt spells out the JSON it wants."""
        answer = self._answer(request.system, request.user)
        return ModelReply(text=answer.text, usage=answer.usage, raw=answer.result,
                          backend=self.name, model=answer.model, quota=answer.quota)

