"""Test extractors for the supervisor's process tests (``HALACHA_EXTRACTOR=tests.support.supervisor_extractors:Name``).

``BlockOnceExtractor`` hangs forever on the decision whose text contains
``TEST_EXTRACTOR_BLOCK_MARK`` — but only while the flag file ``TEST_EXTRACTOR_BLOCK_FLAG`` exists;
the call that blocks removes it, so a restarted run gets an answer for the same decision. Every
call goes to the call log of tests/support/extractors.py.
"""

from __future__ import annotations

import os
import threading
import time

from halacha.extractors.base import ModelCall, ModelReply
from tests.support.extractors import CountingExtractor


class BlockOnceExtractor(CountingExtractor):
    def call(self, request: ModelCall) -> ModelReply:
        mark = os.environ.get("TEST_EXTRACTOR_BLOCK_MARK")
        flag = os.environ.get("TEST_EXTRACTOR_BLOCK_FLAG")
        if mark and flag and mark in request.user:
            try:
                os.remove(flag)
                first = True
            except FileNotFoundError:
                first = False  # already consumed: this is the restarted run, answer normally
            if first:
                self._log(request, "block")
                threading.Event().wait()
        return super().call(request)


class BlockUntilReleasedExtractor(CountingExtractor):
    """Blocks on the decision marked ``TEST_EXTRACTOR_BLOCK_MARK`` until the file
    ``TEST_EXTRACTOR_RELEASE`` exists, then answers it: a hung call that finally comes back.
    Other decisions behave as CountingExtractor's (``TEST_EXTRACTOR_SLEEP`` per call)."""

    def call(self, request: ModelCall) -> ModelReply:
        mark = os.environ.get("TEST_EXTRACTOR_BLOCK_MARK")
        release = os.environ.get("TEST_EXTRACTOR_RELEASE")
        if mark and release and mark in request.user:
            self._log(request, "block")
            while not os.path.exists(release):
                time.sleep(0.05)
            return self._reply(request)
        return super().call(request)
