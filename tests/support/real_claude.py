"""The real Claude CLI, pinned in package.json, run against the local Messages API stub.

``make claude-cli`` (a step of ``make test``) installs it into node_modules/ from the npm registry.
A missing or different CLI fails the tests that need it, with the command that fixes it: these
tests are never skipped.

``use_real_cli`` points the claude-cli backend at it and gives it a world of its own: an empty
HOME and CLAUDE_CONFIG_DIR in the test's temporary folder, the stub as its API
(``ANTHROPIC_BASE_URL``, ``ANTHROPIC_API_KEY=test``), its non-essential traffic (telemetry, error
reports, the auto-updater, feedback surveys) switched off, and the stub as its HTTP(S) proxy, so
any request meant for another host is recorded by the stub instead of leaving the machine.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.anthropic_stub import AnthropicStub
from tests.support.db import ROOT

PACKAGE = "@anthropic-ai/claude-code"
PINNED = json.loads((ROOT / "package.json").read_text())["devDependencies"][PACKAGE]
CLAUDE = ROOT / "node_modules" / ".bin" / "claude"

# Variables from the developer's own environment that would change what the CLI does.
FOREIGN = (
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_MAX_RETRIES",
    "HALACHA_CLI_EXTRA_ARGS",
)


def real_cli() -> Path:
    """The installed CLI, checked to be the pinned version; fails (never skips) otherwise."""
    fix = "run `make claude-cli` (make test does) to install it from the npm registry"
    if not CLAUDE.exists():
        pytest.fail(f"the real Claude CLI is not installed at {CLAUDE}: {fix}", pytrace=False)
    try:
        version = subprocess.run(
            [str(CLAUDE), "--version"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
    except OSError as exc:
        pytest.fail(f"the real Claude CLI at {CLAUDE} does not run ({exc}): {fix}", pytrace=False)
    if not version.startswith(f"{PINNED} "):
        pytest.fail(
            f"{CLAUDE} says {version!r}, but package.json pins {PINNED}: {fix}", pytrace=False
        )
    return CLAUDE


def isolated_env(stub_url: str, home: Path) -> dict[str, str]:
    """Environment for the real CLI: its own HOME, the stub as API and proxy, no other traffic."""
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "ANTHROPIC_BASE_URL": stub_url,
        "ANTHROPIC_API_KEY": "test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
        # Anything not for the stub goes to the stub as a proxy request, and is recorded there.
        "HTTPS_PROXY": stub_url,
        "HTTP_PROXY": stub_url,
        "https_proxy": stub_url,
        "http_proxy": stub_url,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def use_real_cli(monkeypatch, settings, tmp_path: Path, stub: AnthropicStub) -> Path:
    """Configure the claude-cli backend to run the real CLI against ``stub``; returns HOME."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    for name in FOREIGN:
        monkeypatch.delenv(name, raising=False)
    for name, value in isolated_env(stub.url, home).items():
        monkeypatch.setenv(name, value)
    settings.CLAUDE_CLI = str(real_cli())
    settings.CLAUDE_CONFIG_DIR = str(home / ".claude")
    settings.HALACHA_CLI_TIMEOUT_SECONDS = 120
    settings.HALACHA_CLI_MODEL = "claude-sonnet-4-6"
    settings.HALACHA_CLI_EXTRA_ARGS = ""
    settings.DRAINS_FALLBACK_BACKOFF_SECONDS = 900
    return home


def json_size(text: str) -> int:
    """Bytes ``text`` takes inside a JSON request body (UTF-8, escaped, without its quotes)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2


def request_overhead(request, *payload: str) -> int:
    """Bytes of a recorded request beyond ``payload`` (the extraction prompt, the decision)."""
    return request.size - sum(json_size(text) for text in payload)
