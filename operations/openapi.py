"""Post-processing of the published OpenAPI schema (drf-spectacular hooks).

The input serializers refuse unknown fields (BurstInputSerializer.validate), so their request
components are closed: ``additionalProperties: false``. Without it the schema would promise that
an extra field is accepted, and schemathesis rightly reports the mismatch.
"""

from __future__ import annotations


def closed_request_bodies(result, generator, request, public):
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result
