"""The signing key when DJANGO_SECRET_KEY is unset: random, generated once per installation.

No key that anyone else knows is ever used: the repository holds none. The first command that
loads settings writes a fresh random key to ``var/secret_key`` (git-ignored, mode 0600) and every
later command reads it back. Several processes may start at once on a fresh host; each writes
its candidate to a private temporary file and ``link()``s it into place, which succeeds for
exactly one of them, so all of them end up reading the same, complete key.

Several web hosts need one shared key (a session signed on one must verify on the other): set
DJANGO_SECRET_KEY there. ``check --deploy`` warns while the key comes from this file.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

KEY_BYTES = 48  # 64 URL-safe characters


def read_or_create(path: Path) -> str:
    try:
        try:
            return _read(path)
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, candidate = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(KEY_BYTES) + "\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(candidate, path)  # atomic; fails if another process got there first
            except FileExistsError:
                pass
        finally:
            os.unlink(candidate)
        return _read(path)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY is unset and the generated key file {path} cannot be created or "
            f"read ({exc.strerror or exc}). Set DJANGO_SECRET_KEY, or make {path.parent} writable."
        ) from None


def _read(path: Path) -> str:
    key = path.read_text().strip()
    if len(key) < 50:
        raise ImproperlyConfigured(
            f"The generated key file {path} holds no usable key ({len(key)} characters). Delete "
            "it to have a new one generated (every session is then signed out), or set "
            "DJANGO_SECRET_KEY."
        )
    return key
