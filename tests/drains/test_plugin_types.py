"""The plugin API is typed: a drain names its item, payload and backend (``Drain[Item, Payload,
Backend]``), and mypy holds every hook it fills to them, the way `make test`'s mypy holds the
shipped drains (halacha.drain is checked strictly)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.db import ROOT

DRAIN = '''
from typing import TypedDict

from drains.runner import Drain, Processed, Source
from halacha.extractors.base import Extractor, ModelCall
from halacha.models import CourtDecision


class Payload(TypedDict):
    words: int


class WordCount(Drain[CourtDecision, Payload, Extractor]):
    name = "word_count"
    source = Source(CourtDecision)

    def make_extractor(self) -> Extractor:
        return Extractor()

    def process(self, item: CourtDecision) -> Processed[Payload]:
        reply = self.extractor.call(ModelCall(system="Count.", user=item.text, schema={},
                                              offline=lambda: "{}", item=item))
        return Processed(payload=Payload(words=WORDS), usage=reply.usage)

    @classmethod
    def promote(cls, item_key: str, payload: PROMOTED) -> None:
        print(payload["words"] + 1)
'''


def mypy_on(tmp_path, **changes: str) -> tuple[str, int]:
    source = DRAIN
    for name, value in {"WORDS": "len(item.text.split())", "PROMOTED": "Payload",
                        **changes}.items():
        source = source.replace(name, value)
    module = tmp_path / "a_drain.py"
    module.write_text(source)
    # In a process of its own: the django-stubs plugin sets up Django for itself.
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                           str(ROOT / "pyproject.toml"), str(module)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr, done.returncode


def test_a_drain_whose_hooks_agree_with_its_types_passes(tmp_path):
    said, code = mypy_on(tmp_path)
    assert code == 0, said


def test_a_payload_of_the_wrong_shape_and_a_promote_of_another_payload_are_refused(tmp_path):
    said, code = mypy_on(tmp_path, WORDS='"many"', PROMOTED="dict[str, str]")
    assert code == 1
    assert 'TypedDict item "words" has type "int"' in said, said
    assert 'Argument 2 of "promote" is incompatible with supertype' in said, said
