"""The published OpenAPI schema's extensions: post-processing hooks and the token scheme.

The input serializers refuse unknown fields (BurstInputSerializer.validate), so their request
components are closed: ``additionalProperties: false``. Without it the schema would promise that
an extra field is accepted, and schemathesis rightly reports the mismatch.
"""

from __future__ import annotations

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme


def closed_request_bodies(result, generator, request, public):
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


class HashedTokenScheme(KnoxTokenScheme):
    """The schema's security scheme for our knox token class (``Authorization: Token <key>``);
    knox's own extension matches knox's class only, not a subclass."""

    target_class = "operations.authentication.HashedTokenAuthentication"
    name = "tokenAuth"
