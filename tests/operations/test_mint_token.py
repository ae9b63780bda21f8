from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tests.support.db import manage


def mint(*args):
    out, err = StringIO(), StringIO()
    call_command("mint_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_mint_token__prints_a_working_token(script_user):
    key, err = mint("cronbot")
    assert len(key) == 40
    assert "new token for cronbot" in err
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/operations/").status_code == 200


def test_mint_token__same_key_again_unless_rotated(script_user):
    first, _ = mint("cronbot")
    assert mint("cronbot")[0] == first
    rotated, _ = mint("cronbot", "--rotate")
    assert rotated != first
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert client.get("/api/operations/").status_code == 401


def test_mint_token__warns_when_the_user_lacks_the_permissions(plain_user):
    _, err = mint("pat")
    assert "pat lacks drains.view_draincontrol, drains.change_draincontrol" in err


def test_mint_token__unknown_user_is_a_clear_error(db):
    with pytest.raises(CommandError, match="There is no user 'ghost'. Create one first"):
        mint("ghost")


def test_mint_token__inactive_user(plain_user):
    plain_user.is_active = False
    plain_user.save()
    with pytest.raises(CommandError, match="inactive"):
        mint("pat")


@pytest.mark.django_db(transaction=True)
def test_mint_token__help_says_cron_never_runs_it():
    result = manage("mint_token", "--help")
    assert result.returncode == 0
    assert "cron never runs it" in " ".join(result.stdout.split())
    assert "--rotate" in result.stdout
