from django.urls import path
from django.views.generic import RedirectView

from operations import apis, views

api_urlpatterns = [
    path("operations/", apis.OperationsSnapshotApi.as_view(), name="snapshot"),
    path("operations/drains/<slug:name>/burst", apis.DrainBurstApi.as_view(), name="burst"),
    path("health/", apis.HealthApi.as_view(), name="health"),
]

page_urlpatterns = [
    # The admin's "View site" leads to "/"; a slash typed after the page's name is still the page.
    path("", RedirectView.as_view(pattern_name="operations:page"), name="home"),
    path("operations/", RedirectView.as_view(pattern_name="operations:page")),
    path("operations", views.OperationsPage.as_view(), name="page"),
    path("operations/burndown/<slug:name>.svg", views.BurndownChart.as_view(), name="burndown"),
]
