from django.urls import path

from operations import apis, views

api_urlpatterns = [
    path("operations/", apis.OperationsSnapshotApi.as_view(), name="snapshot"),
    path("operations/drains/<slug:name>/burst", apis.DrainBurstApi.as_view(), name="burst"),
    path("operations/quota/policy", apis.QuotaPolicyApi.as_view(), name="quota_policy"),
    path("health/", apis.HealthApi.as_view(), name="health"),
]

page_urlpatterns = [
    path("operations", views.OperationsPage.as_view(), name="page"),
    path("operations/burndown/<slug:name>.svg", views.BurndownChart.as_view(), name="burndown"),
]
