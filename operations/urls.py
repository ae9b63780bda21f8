from django.urls import path
from django.views.generic import RedirectView

from operations import action_apis, apis, views

api_urlpatterns = [
    path("operations/", apis.OperationsSnapshotApi.as_view(), name="snapshot"),
    path("operations/drains/<slug:name>/burst", apis.DrainBurstApi.as_view(), name="burst"),
    path("operations/drains/<slug:name>/enabled", action_apis.EnabledApi.as_view(), name="enabled"),
    path("operations/drains/<slug:name>/run-now", action_apis.RunNowApi.as_view(), name="run-now"),
    path("operations/drains/<slug:name>/retry-now", action_apis.RetryNowApi.as_view(), name="retry-now"),
    path("operations/drains/<slug:name>/retry-failed", action_apis.RetryFailedApi.as_view(),
         name="retry-failed"),
    path("operations/failed", action_apis.FailedItemsApi.as_view(), name="failed"),
    path("operations/timeline", action_apis.TimelineApi.as_view(), name="timeline"),
    path("operations/runs/<int:run_id>", action_apis.RunApi.as_view(), name="run"),
    path("operations/runs/<int:run_id>/stop", action_apis.StopRunApi.as_view(), name="stop-run"),
    path("operations/quota/policy", apis.QuotaPolicyApi.as_view(), name="quota_policy"),
    path("health/", apis.HealthApi.as_view(), name="health"),
]

page_urlpatterns = [
    # The admin's "View site" leads to "/"; a slash typed after the page's name is still the page.
    path("", RedirectView.as_view(pattern_name="operations:page"), name="home"),
    path("operations/", RedirectView.as_view(pattern_name="operations:page")),
    path("operations", views.OperationsPage.as_view(), name="page"),
    path("operations/burndown/<slug:name>.svg", views.BurndownChart.as_view(), name="burndown"),
    path("operations/runs/<int:run_id>", views.RunPage.as_view(), name="run"),
    path("operations/failed", views.FailedPage.as_view(), name="failed"),
    path("operations/timeline", views.TimelinePage.as_view(), name="timeline"),
    path("operations/events/<int:event_id>", views.EventPage.as_view(), name="event"),
]
