from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from operations.urls import api_urlpatterns as operations_api
from operations.urls import page_urlpatterns as operations_pages

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include((operations_api, "operations"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include((operations_pages, "operations"), namespace="operations")),
]

# JSON 404s under /api/ (a path no route matches), Django's page elsewhere.
handler404 = "operations.views.not_found"
