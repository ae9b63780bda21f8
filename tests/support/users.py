"""Test users whose passwords are hashed once per session, not once per test.

Django hashes a password with PBKDF2 at 1,000,000 iterations (about 0.2 s of CPU), and
``create_user(password=...)`` does so with a new salt every time: for the hundreds of tests
whose fixtures make a user, that was the biggest CPU cost of the in-process tests. The hash
here is the same real PBKDF2 hash (same hasher, same iterations), made once per password and
reused, so any process (the production server of the e2e tests included) verifies it as it
would a user's; only the salt is shared between tests.
"""

from __future__ import annotations

import functools

from django.contrib.auth.hashers import make_password


@functools.cache
def password_hash(raw: str) -> str:
    return make_password(raw)


def make_user(model, username: str, password: str, **fields):
    """``model.objects.create_user`` with ``password`` set from the session's hash."""
    user = model._default_manager.create_user(username=username, password=None, **fields)
    user.password = password_hash(password)
    user.save(update_fields=["password"])
    return user
