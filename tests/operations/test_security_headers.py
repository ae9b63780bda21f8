"""A strict Content-Security-Policy on every page, and no caching of API answers."""

from __future__ import annotations

import re

import pytest
from django.test import Client

STRICT = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
}


def _policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: " ".join(part.split()[1:]) for part in header.split("; ")}


@pytest.mark.parametrize("path", ["/operations", "/admin/login/", "/api/docs/", "/api/operations/"])
def test_strict_csp_on_every_page(operator, path):
    client = Client()
    client.force_login(operator)
    policy = _policy(client.get(path))
    for directive, value in STRICT.items():
        assert policy[directive] == value, (directive, policy)
    assert "unsafe-inline" not in str(policy) and "unsafe-eval" not in str(policy)


@pytest.mark.parametrize("path", ["/operations", "/api/docs/"])
def test_pages_have_no_inline_script(operator, path):
    client = Client()
    client.force_login(operator)
    html = client.get(path).content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts
    for attributes, body in scripts:
        # A JSON data block is not executed, so the CSP allows it; anything else comes from a file.
        assert "src=" in attributes or 'type="application/json"' in attributes, (attributes, body[:80])
        assert "src=" not in attributes or not body.strip()
    # Nor inline event handlers (onclick="..."), which script-src 'self' would block.
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html), re.search(r"<[^>]*\son[a-z]+\s*=", html)


@pytest.mark.parametrize(("path", "status"), [
    ("/api/operations/", 200),
    ("/api/nothing/", 404),
    ("/api/health/", 200),
])
def test_api_answers_are_never_cached(operator, path, status):
    client = Client()
    client.force_login(operator)
    response = client.get(path)
    assert response.status_code == status
    assert "no-store" in response["Cache-Control"]


def test_api_401_is_never_cached(db):
    response = Client().get("/api/operations/")
    assert response.status_code == 401
    assert "no-store" in response["Cache-Control"]
