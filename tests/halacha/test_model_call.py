"""The one model call: a drain no backend knows goes through every backend unchanged.

A word-count "drain" that exists only here asks its own question (its system prompt, user prompt,
JSON schema and offline rule) through the offline backend, the ``anthropic`` SDK against the API
stand-in, the ``claude-cli`` backend (the fake CLI, as its process tests use), and the test
stand-ins of tests/support/extractors.py. None of them has a method for it, and none was changed
for it: what a backend sends is the drain's prompts and schema, and what it returns is the reply's
text with the usage and model.
"""

from __future__ import annotations

import json

import pytest

from halacha.extractors import get_extractor
from halacha.extractors.base import ModelCall, ModelReply
from tests.halacha.test_claude_cli import cli  # noqa: F401  (the fake CLI, configured)
from tests.support.anthropic_stub import AnthropicStub
from tests.support.extractors import USAGE, InstantExtractor

SYSTEM = 'Count the words of the text. Reply with JSON only: {"words": N}.'
SCHEMA = {"type": "object", "properties": {"words": {"type": "integer"}}, "required": ["words"]}
TEXT = "A landlord may not cut off water."


def words_call(text: str) -> ModelCall:
    return ModelCall(system=SYSTEM, user=text, schema=SCHEMA,
                     offline=lambda: json.dumps({"words": len(text.split())}))


def test_the_offline_backend_answers_with_the_drains_own_offline_rule():
    reply = get_extractor("offline").call(words_call(TEXT))
    assert isinstance(reply, ModelReply)
    assert json.loads(reply.text) == {"words": 7}
    assert (reply.backend, reply.usage["output_tokens"]) == ("offline", 0)


def test_the_sdk_sends_the_drains_prompts_and_schema_and_returns_the_text(monkeypatch, settings):
    with AnthropicStub() as stub:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
        settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
        settings.HALACHA_MODEL = "claude-haiku-4-5"
        stub.reply('{"words": 7}', model="claude-haiku-4-5")
        reply = get_extractor("anthropic").call(words_call(TEXT))
        body = stub.messages()[0].body
    assert reply.text == '{"words": 7}'
    assert (reply.backend, reply.model) == ("anthropic", "claude-haiku-4-5")
    assert [block["text"] for block in body["system"]] == [SYSTEM]
    assert body["messages"] == [{"role": "user", "content": TEXT}]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}


def test_the_cli_backend_runs_the_drains_prompts_and_returns_the_text(cli):  # noqa: F811
    record = cli(result='{"words": 7}')
    reply = get_extractor("claude-cli").call(words_call(TEXT))
    assert reply.text == '{"words": 7}' and reply.backend == "claude-cli"
    assert reply.usage["input_tokens"] > 0  # what the CLI reported the call cost
    assert TEXT in (record / "stdin.txt").read_text()  # the drain's user prompt, on stdin


@pytest.mark.parametrize("name", ["InstantExtractor", "CountingExtractor"])
def test_the_test_stand_ins_answer_any_drain_with_its_offline_rule_at_a_price(name):
    stand_in = get_extractor(f"tests.support.extractors:{name}")
    assert isinstance(stand_in, InstantExtractor)
    reply = stand_in.call(words_call(TEXT))
    assert json.loads(reply.text) == {"words": 7}
    assert reply.usage == USAGE


class OldStyleBackend:
    """A backend of one's own written for the interface before the generic call."""

    def extract(self, decision):  # pragma: no cover - never called
        raise AssertionError


def test_a_backend_without_the_generic_call_is_refused_with_what_to_do(settings):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="has no call\\(ModelCall\\) method"):
        get_extractor(f"{__name__}:OldStyleBackend")
