from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

# The schema's token scheme registers itself when imported; the schema is only ever generated
# from this URL conf, so importing it here (not at start-up) keeps drf-spectacular's plumbing
# (about 0.12 s of imports) out of every cron job's start.
from halacha import web as halacha_web
from operations import openapi  # noqa: F401
from operations.errors import json_error_view
from operations.metrics import metrics_view
from operations.urls import api_urlpatterns as operations_api
from operations.urls import page_urlpatterns as operations_pages

urlpatterns = [
    path("admin/", admin.site.urls),
    # The evaluations (halacha/web.py) sit on the operations site, under its names.
    path("api/", include((operations_api + halacha_web.api_urlpatterns, "operations"),
                         namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: the strict CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("metrics", metrics_view, name="metrics"),
    # Browsers ask for it on every page (the admin's too); a 404 would be a console error.
    path("favicon.ico", RedirectView.as_view(url=static("operations/favicon.svg"), permanent=True)),
    path("", include((operations_pages + halacha_web.page_urlpatterns, "operations"),
                     namespace="operations")),
]

# Under /api/ every error is JSON in the one shape (operations/errors.py), Django's page elsewhere.
handler400 = json_error_view(400)
handler403 = json_error_view(403)
handler404 = json_error_view(404)
handler500 = json_error_view(500)
