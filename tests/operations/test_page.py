from __future__ import annotations

import json

import pytest
from django.test import Client

from drains import registry
from drains.bursts import set_drain_burst


def _client(user=None):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_page__anonymous_is_sent_to_log_in(db):
    response = _client().get("/operations")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/operations")


@pytest.mark.parametrize("path", ["/", "/operations/"])
def test_page__root_and_trailing_slash_lead_to_the_page(operator, path):
    response = _client(operator).get(path, follow=True)
    assert response.redirect_chain == [("/operations", 302)]
    assert response.status_code == 200 and b'id="services"' in response.content


def test_page__non_staff_is_sent_to_log_in(non_staff):
    response = _client(non_staff).get("/operations")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_page__staff_without_the_view_permission_is_refused(staff_without_perm):
    assert _client(staff_without_perm).get("/operations").status_code == 403


def test_page__shows_every_service_with_picker_defaulting_to_saturday_18(operator, frozen):
    response = _client(operator).get("/operations")
    assert response.status_code == 200
    html = response.content.decode()
    for name in [*registry.names(), *registry.jobs()]:
        assert f'data-service="{name}"' in html
    assert html.count('type="date"') == 2  # one picker per drain
    assert 'min="2026-12-02"' in html and 'max="2026-12-05"' in html  # today .. the boundary
    assert 'value="2026-12-05"' in html
    assert '<option value="18" selected>18</option>' in html  # a 24-hour clock
    assert '<option value="00" selected>00</option>' in html
    assert "Sat 2026-12-05 18:00 IST" in html  # the quota reset, Asia/Jerusalem
    assert 'name="csrfmiddlewaretoken"' in html
    assert "/static/operations/operations.js" in html
    data = json.loads(html.split('id="snapshot-data" type="application/json">')[1].split("</script>")[0])
    assert {s["name"] for s in data["services"]} >= {"halacha", "metadata"}
    assert "disabled" not in html.split('name="action" value="on"')[1].split(">")[0]


def test_page__picker_shows_the_active_burst_deadline(operator, frozen):
    set_drain_burst(name="halacha", until="2026-12-04T09:30:00+02:00", actor="olga")
    html = _client(operator).get("/operations").content.decode()
    assert 'value="2026-12-04"' in html
    assert '<option value="09" selected>09</option>' in html
    assert '<option value="30" selected>30</option>' in html
    assert "on until Fri 09:30 IST" in html


def test_page__view_only_staff_sees_disabled_controls_and_why(viewer, frozen):
    html = _client(viewer).get("/operations").content.decode()
    button = html.split('name="action" value="on"')[1].split(">")[0]
    assert "disabled" in button
    assert "needs the permission drains.change_draincontrol" in button  # its title
    assert 'id="view-only"' in html and "You can view only" in html


def test_page__stop_is_disabled_with_no_burst_to_stop(operator, frozen):
    html = _client(operator).get("/operations").content.decode()
    stop = html.split('name="action" value="off"')[1].split(">")[0]
    assert "disabled" in stop and 'title="no burst to stop"' in stop
    assert 'id="view-only"' not in html
    set_drain_burst(name="halacha", until="2026-12-04T09:30:00+02:00", actor="olga")
    html = _client(operator).get("/operations").content.decode()
    halacha = html.split('data-service="halacha"')[1].split("</tbody>")[0]
    stop = halacha.split('name="action" value="off"')[1].split(">")[0]
    assert "disabled" not in stop


def test_page__static_files_are_served_without_a_web_server(db):
    response = _client().get("/static/operations/operations.js")
    try:
        assert response.status_code == 200
        assert b"wallTimeToIso" in b"".join(response.streaming_content)
    finally:
        response.close()


@pytest.mark.parametrize("asset", ["swagger-ui-dist/swagger-ui-bundle.js",
                                   "swagger-ui-dist/swagger-ui.css"])
def test_api_docs_page_needs_no_cdn(db, asset):
    docs = _client().get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    assert f"/static/drf_spectacular_sidecar/{asset}" in html
    response = _client().get(f"/static/drf_spectacular_sidecar/{asset}")
    response.close()
    assert response.status_code == 200


def test_schema_lists_both_operations(db):
    schema = _client().get("/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert set(paths["/api/operations/"]) == {"get"}
    assert set(paths["/api/operations/drains/{name}/burst"]) == {"post"}
    assert set(paths["/api/health/"]) == {"get"}


def test_burndown_chart(operator, frozen):
    response = _client(operator).get("/operations/burndown/halacha.svg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")
    assert _client(operator).get("/operations/burndown/nope.svg").status_code == 404
    assert _client().get("/operations/burndown/halacha.svg").status_code == 302
