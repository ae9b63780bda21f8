"""Settings for a test's child process that needs a value no deployment sets (a chunk of 2 items,
a hung run after 2 s, the journal off): the project's settings, then the JSON object in
``TEST_SETTINGS`` on top, the way a host layers its own settings module on the project's
(docs/deploy.md). A test asks for it with ``with_settings(env, NAME=value)`` (tests/support/db.py).
"""

import json
import os

from config.settings import *  # noqa: F403

_overrides = json.loads(os.environ.get("TEST_SETTINGS", "{}"))
globals().update(_overrides)
# config/settings.py built the connection's parameters from this one: build them again.
if "DRAINS_DB_CONNECT_TIMEOUT_SECONDS" in _overrides:
    DATABASES["default"]["OPTIONS"]["connect_timeout"] = str(  # noqa: F405
        _overrides["DRAINS_DB_CONNECT_TIMEOUT_SECONDS"]
    )
