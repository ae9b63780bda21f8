"""The claude-cli backend's command line: the flags it always passes, the environment it sets,
and the operator's extra flags, checked so that none of them can give the model tools.

Why each flag is there is explained in halacha/extractors/claude_cli.py's docstring; this module
is the one list of them.
"""

from __future__ import annotations

import shlex

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Set for the CLI unless the operator's environment already sets them (see the docstring).
CLI_ENV_DEFAULTS = {
    "CLAUDE_CODE_MAX_RETRIES": "0",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
}

# Flags an operator may add, and whether each takes a value ("many": one or more).
ALLOWED_EXTRA: dict[str, int | str] = {  # the values each flag takes ("many": any number)
    "--effort": 1,
    "--fallback-model": 1,
    "--max-budget-usd": 1,
    "--betas": "many",
    "--append-system-prompt": 1,
    "--append-system-prompt-file": 1,
    "--debug-file": 1,
    "--verbose": 0,
    "--bare": 0,
    "--exclude-dynamic-system-prompt-sections": 0,
}

# Why the others are refused: the backend sets them, or they could hand the model tools.
OWNED = "is set by the backend itself"
TOOLS = "could give the model tools, and a decision is untrusted text"
REFUSED_EXTRA = {
    "-p": OWNED,
    "--print": OWNED,
    "--output-format": OWNED,
    "--input-format": OWNED,
    "--system-prompt": OWNED,
    "--system-prompt-file": OWNED,
    "--max-turns": OWNED,
    "--model": "is set by HALACHA_CLI_MODEL",
    "--no-session-persistence": OWNED,
    "--strict-mcp-config": OWNED,
    "--disable-slash-commands": OWNED,
    "--setting-sources": TOOLS,
    "--tools": TOOLS,
    "--allowedTools": TOOLS,
    "--allowed-tools": TOOLS,
    "--disallowedTools": "is pointless: no tool is available",
    "--disallowed-tools": "is pointless: no tool is available",
    "--mcp-config": TOOLS,
    "--settings": TOOLS,
    "--permission-mode": TOOLS,
    "--permission-prompt-tool": TOOLS,
    "--dangerously-skip-permissions": TOOLS,
    "--allow-dangerously-skip-permissions": TOOLS,
    "--agent": TOOLS,
    "--agents": TOOLS,
    "--plugin-dir": TOOLS,
    "--plugin-url": TOOLS,
    "--add-dir": TOOLS,
    "--chrome": TOOLS,
    "--brief": TOOLS,
    "--ide": TOOLS,
    "--json-schema": "adds a StructuredOutput tool to every request (see claude_cli's docstring)",
}


class CliConfigError(ImproperlyConfigured):
    """HALACHA_CLI_MODEL or HALACHA_CLI_EXTRA_ARGS is unusable; the message says how to fix it."""


def extra_args(value: str | None = None) -> list[str]:
    """HALACHA_CLI_EXTRA_ARGS split like a shell would, each flag checked; or CliConfigError."""
    value = settings.HALACHA_CLI_EXTRA_ARGS if value is None else value
    try:
        tokens = shlex.split(value or "")
    except ValueError as exc:
        raise CliConfigError(f"HALACHA_CLI_EXTRA_ARGS cannot be split ({exc}): {value!r}") from None
    takes: int | str = 0  # values still expected by the flag before
    for token in tokens:
        if not token.startswith("-") or token == "-":
            if takes == 0:
                raise CliConfigError(
                    f"HALACHA_CLI_EXTRA_ARGS: {token!r} is not a flag nor the value of one "
                    "(the prompt goes on standard input; remove it)"
                )
            takes = takes - 1 if isinstance(takes, int) else takes
            continue
        flag = token.split("=", 1)[0]
        if flag in REFUSED_EXTRA:
            raise CliConfigError(
                f"HALACHA_CLI_EXTRA_ARGS: {flag} {REFUSED_EXTRA[flag]}; remove it"
            )
        if flag not in ALLOWED_EXTRA:
            raise CliConfigError(
                f"HALACHA_CLI_EXTRA_ARGS: {flag} is not among the flags known to keep the call "
                f"tool-less ({', '.join(ALLOWED_EXTRA)}); remove it"
            )
        takes = 0 if "=" in token else ALLOWED_EXTRA[flag]
    if isinstance(takes, int) and takes > 0:
        raise CliConfigError(f"HALACHA_CLI_EXTRA_ARGS: {tokens[-1]} needs a value")
    return tokens


def cli_args(*, model: str, system_prompt_file: str, extra: list[str]) -> list[str]:
    """The CLI's arguments after the executable (each one is explained in the docstring)."""
    return [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--system-prompt-file",
        system_prompt_file,
        "--tools",
        "",
        "--max-turns",
        "1",
        "--model",
        model,
        "--no-session-persistence",
        "--strict-mcp-config",
        "--setting-sources",
        "",
        "--disable-slash-commands",
        *extra,
    ]
