"""The ``claude-cli`` backend: the Claude CLI in headless mode, ``claude -p --output-format json``.

The executable comes from CLAUDE_CLI, the prompt goes on standard input, and the call is killed
(its whole process group, then reaped) after HALACHA_CLI_TIMEOUT_SECONDS. The final JSON object's
``result`` is validated like any model reply; its usage and ``total_cost_usd`` are kept.

A reply is a usage limit only when the CLI says it failed — ``is_error`` true, ``api_error_status``
429, or a non-zero exit — and its text is a limit notice; then it becomes ``RateLimited`` with the
reset read by drains.ratelimit. Text inside a successful answer is never read as a limit (a
decision may well say "limit reached"). Every other failure is an ``ExtractionError`` with stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from typing import Any

from django.conf import settings

from drains.ratelimit import is_limit_message, parse_reset
from halacha.extractors.base import (
    ExtractionError,
    ExtractionResult,
    Extractor,
    MetadataResult,
    empty_usage,
)
from halacha.extractors.protocol import (
    cli_metadata_prompt,
    cli_prompt,
    parse_halachot,
    parse_metadata,
)

ARGS = ("-p", "--output-format", "json")
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


def usage_of(result: dict) -> dict[str, Any]:
    usage = empty_usage()
    reported = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    for key in usage:
        try:
            usage[key] = int(reported.get(key) or 0)
        except (TypeError, ValueError):
            usage[key] = 0
    cost = result.get("total_cost_usd")
    if isinstance(cost, int | float):
        usage["cost_usd"] = float(cost)
    return usage


class ClaudeCliExtractor(Extractor):
    name = "claude-cli"

    @property
    def model(self) -> str:
        return ""  # the CLI account's own model; the reply names the one it used

    def executable(self) -> str:
        configured = settings.CLAUDE_CLI or "claude"
        return shutil.which(configured) or configured

    def quota_key(self) -> str:
        key = f"claude-cli:{self.executable()}"
        if settings.CLAUDE_CONFIG_DIR:
            key += f":{settings.CLAUDE_CONFIG_DIR}"
        return key

    # --- running the CLI ------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if settings.CLAUDE_CONFIG_DIR:
            env["CLAUDE_CONFIG_DIR"] = settings.CLAUDE_CONFIG_DIR
        return env

    def run(self, prompt: str) -> tuple[int, str, str]:
        """Run the CLI once with ``prompt`` on stdin; (exit status, stdout, stderr)."""
        executable = self.executable()
        timeout = float(settings.HALACHA_CLI_TIMEOUT_SECONDS)
        try:
            process = subprocess.Popen(
                [executable, *ARGS],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=self._env(),
                # Its own process group, so a timeout kills whatever the CLI started as well.
                start_new_session=True,
            )
        except OSError as exc:
            raise ExtractionError(
                f"cannot run the Claude CLI {executable!r}: {exc}. Set CLAUDE_CLI to its path."
            ) from exc
        try:
            stdout, stderr = process.communicate(prompt, timeout=timeout)
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

    def _answer(self, prompt: str) -> tuple[str, dict, dict[str, Any], str]:
        """(result text, the JSON object, usage, model) of a successful answer, or raise."""
        status, stdout, stderr = self.run(prompt)
        objects = _json_objects(stdout)
        results = [o for o in objects if o.get("type") == "result"] or objects[-1:]
        if not results:
            self._plain_text_failure(status, stdout, stderr)
        result = results[-1]
        text = result.get("result") if isinstance(result.get("result"), str) else ""
        usage = usage_of(result)
        failed = bool(result.get("is_error")) or status != 0
        limited = result.get("api_error_status") == 429
        if failed or limited:
            if limited or is_limit_message(text):
                info = parse_reset(text)
                if not info.trusted:
                    info = self._stream_reset(objects) or info
                raise info.rate_limited(text)
            raise ExtractionError(
                f"the Claude CLI reported an error (exit status {status}"
                f"{', API status ' + str(result['api_error_status']) if result.get('api_error_status') else ''}"
                f"): {_head(text) or '(no text)'}; stderr: {_tail(stderr) or '(empty)'}",
                raw=result,
                usage=usage,
            )
        model_usage = result.get("modelUsage")
        model = next(iter(model_usage), "") if isinstance(model_usage, dict) else ""
        return text, result, usage, model

    @staticmethod
    def _stream_reset(objects: list[dict]):
        """A rejected ``rate_limit_event`` (stream-json) names its reset as an epoch."""
        for event in reversed(objects):
            info = event.get("rate_limit_info") if event.get("type") == "rate_limit_event" else None
            if isinstance(info, dict) and info.get("status") == "rejected" and info.get("resetsAt"):
                parsed = parse_reset(json.dumps({"resetsAt": info["resetsAt"]}))
                if parsed.trusted:
                    return parsed
        return None

    @staticmethod
    def _plain_text_failure(status: int, stdout: str, stderr: str):
        """Output that is not the JSON result: a limit notice, a crash, or garbage."""
        combined = "\n".join(part.strip() for part in (stdout, stderr) if part.strip())
        # Older CLIs print the limit as plain text (exit 1); a short notice with exit 0 is
        # still a notice, not an answer, because an answer always comes as the JSON object.
        if is_limit_message(combined) and (status != 0 or len(combined) <= 300):
            raise parse_reset(combined).rate_limited(combined)
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

    def extract(self, decision) -> ExtractionResult:
        text, result, usage, model = self._answer(cli_prompt(decision))
        try:
            parsed = parse_halachot(text, decision.text)
        except ExtractionError as exc:
            exc.raw, exc.usage = result, usage  # paid for: the runtime records both
            raise
        return ExtractionResult(
            halachot=parsed.halachot,
            usage=usage,
            raw=result,
            rejected=parsed.rejected,
            extractor=self.name,
            model=model,
            problems=parsed.problems,
        )

    def extract_metadata(self, decision) -> MetadataResult:
        text, result, usage, model = self._answer(cli_metadata_prompt(decision))
        try:
            parsed = parse_metadata(text)
        except ExtractionError as exc:
            exc.raw, exc.usage = result, usage
            raise
        return MetadataResult(
            court=parsed.court,
            case_number=parsed.case_number,
            decided_on=parsed.decided_on,
            judges=parsed.judges,
            parties=parsed.parties,
            usage=usage,
            raw=result,
            extractor=self.name,
            model=model,
        )
