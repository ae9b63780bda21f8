"""Hashed, named, expiring API tokens: minted once, listed, revoked (CLI and admin)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from freezegun import freeze_time
from rest_framework.test import APIClient

from operations.models import ApiToken
from tests.support.db import manage

SNAPSHOT = "/api/operations/"


def run(command, *args):
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def mint(*args):
    return run("mint_token", *args)


def status_with(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get(SNAPSHOT).status_code


def test_mint_token__prints_a_working_token_once(script_user):
    key, err = mint("cronbot", "--name", "nightly report", "--days", "30")
    assert len(key) == 64
    assert status_with(key) == 200
    assert "new token 'nightly report' for cronbot" in err
    assert "shown only this once" in err
    token = ApiToken.objects.get()
    assert token.name == "nightly report"
    assert token.expiry is not None


def test_the_database_holds_no_usable_token(script_user):
    key, _ = mint("cronbot")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM operations_apitoken")
        rows = cursor.fetchall()
    stored = [str(value) for row in rows for value in row]
    assert len(rows) == 1
    assert not any(key in value for value in stored)  # the token is nowhere in the row
    token = ApiToken.objects.get()
    assert token.digest != key and len(token.digest) == 128  # a SHA-512 digest
    assert key.startswith(token.token_key) and len(token.token_key) == 15
    # Nothing read from the table works as a credential.
    for value in stored:
        assert status_with(value) == 401


def test_an_expired_token_gets_401(script_user):
    key, _ = mint("cronbot", "--days", "1")
    assert status_with(key) == 200
    with freeze_time(ApiToken.objects.get().expiry + timedelta(seconds=1)):
        assert status_with(key) == 401
    assert not ApiToken.objects.exists()  # knox removes it when it is used after its expiry


def test_each_mint_is_a_new_token_and_rotate_revokes_the_old_one(script_user):
    first, _ = mint("cronbot", "--name", "a")
    second, _ = mint("cronbot", "--name", "a")
    assert first != second
    assert status_with(first) == 200 and status_with(second) == 200
    third, _ = mint("cronbot", "--name", "a", "--rotate")
    assert status_with(first) == 401 and status_with(second) == 401
    assert status_with(third) == 200


def test_list_and_revoke_from_the_command_line(script_user, operator):
    key, _ = mint("cronbot", "--name", "report")
    other, _ = mint("olga", "--name", "laptop")
    listing, _ = run("list_tokens")
    lines = listing.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{key[:15]}  cronbot  'report'  created ")
    assert lines[1].startswith(f"{other[:15]}  olga  'laptop'  created ")
    assert key not in listing and other not in listing
    out, _ = run("revoke_token", key[:15])
    assert out == f"revoked {key[:15]}  cronbot  'report'"
    assert status_with(key) == 401
    assert status_with(other) == 200
    out, _ = run("revoke_token", "--user", "olga", "--name", "laptop")
    assert status_with(other) == 401
    assert run("list_tokens")[0] == "no tokens"


def test_revoke__unknown_prefix_is_a_clear_error(db):
    with pytest.raises(CommandError, match="No such token. list_tokens shows the tokens there are."):
        call_command("revoke_token", "nope")


def test_list_and_revoke_in_the_admin(script_user, django_user_model, client):
    admin_user = django_user_model.objects.create_superuser("root", password="pw-root-long")
    key, _ = mint("cronbot", "--name", "report")
    client.force_login(admin_user)
    page = client.get("/admin/operations/apitoken/")
    assert page.status_code == 200
    assert key[:15] in page.content.decode() and "report" in page.content.decode()
    assert key not in page.content.decode()
    digest = ApiToken.objects.get().digest
    response = client.post("/admin/operations/apitoken/",
                           {"action": "delete_selected", "_selected_action": [digest], "post": "yes"})
    assert response.status_code == 302
    assert status_with(key) == 401
    assert client.get("/admin/operations/apitoken/add/").status_code == 403  # minted by the CLI only


def test_mint_token__warns_when_the_user_lacks_the_permissions(plain_user):
    _, err = mint("pat")
    assert "note: pat lacks drains.view_draincontrol, drains.change_draincontrol" in err


def test_mint_token__unknown_user_is_a_clear_error(db):
    with pytest.raises(CommandError, match="There is no user 'ghost'"):
        mint("ghost")


def test_mint_token__inactive_user(plain_user):
    plain_user.is_active = False
    plain_user.save()
    with pytest.raises(CommandError, match="inactive"):
        mint("pat")


@pytest.mark.parametrize(("args", "message"), [
    (["--days", "0"], "--days: '0' must be at least 0.01"),
    (["--days", "0.00001"], "--days: '0.00001' must be at least 0.01"),
    (["--days", "999999999"], "--days: '999999999' must be at most 3650"),
    (["--days", "nan"], "--days: 'nan' is not a number from 0.01 to 3650 days"),
    (["--name", " "], "is blank; give a token name of 1 to 100 characters"),
    (["--name", "x" * 101], "is too long; give a token name of 1 to 100 characters"),
])
def test_mint_token__bad_arguments(script_user, args, message):
    with pytest.raises(CommandError, match=message) as refused:
        mint("cronbot", *args)
    assert refused.value.returncode == 2
    assert not ApiToken.objects.exists()


def test_mint_token__help_says_cron_never_runs_it():
    result = manage("mint_token", "--help")
    assert result.returncode == 0
    assert "cron never runs it" in result.stdout
