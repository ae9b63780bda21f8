"""The evaluations on the web: the comparison as JSON and as a page, and the operator's choice of
the drains' model and effort (halacha/evaluation.py), on the operations site's footing (its
authentication, permissions, throttles, error shape and base template)."""

from __future__ import annotations

from django.shortcuts import render
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import ensure_csrf_cookie
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from halacha import evaluation
from operations.action_apis import ACTION_ERRORS
from operations.api_base import (
    COMMON_ERRORS,
    ChangeApi,
    Conflict,
    ReadApi,
    action_done,
    error_responses,
    valid_input,
)
from operations.inputs import _NoUnknownFields
from operations.serializers import ActionResultSerializer, as_json
from operations.views import _action_context, page_access


class EvaluationRowSerializer(serializers.Serializer):
    """One configuration's latest evaluation over the gold set (halacha/evaluation.py)."""

    id = serializers.IntegerField()
    configuration = serializers.CharField(help_text="backend:model[:effort]")
    backend = serializers.CharField()
    model = serializers.CharField()
    effort = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField()
    decisions = serializers.IntegerField(help_text="Gold decisions it was to ask.")
    asked = serializers.IntegerField(help_text="Of them, asked: what it is scored and priced over.")
    complete = serializers.BooleanField(help_text="Every decision asked (only then can it be the "
                                        "best, or be chosen).")
    answered = serializers.IntegerField(help_text="Of them, answered with a usable reply.")
    gold = serializers.IntegerField(help_text="Gold halachot of those decisions.")
    predicted = serializers.IntegerField()
    found = serializers.IntegerField(help_text="Predicted halachot matching a gold one.")
    precision = serializers.FloatField()
    recall = serializers.FloatField()
    f1 = serializers.FloatField()
    rejected = serializers.IntegerField(help_text="Quotes no grounding tier found.")
    tiers = serializers.DictField(child=serializers.IntegerField(),
                                  help_text="Kept quotes per grounding tier.")
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField(allow_null=True, help_text="Where the backend says.")
    cost_each = serializers.FloatField(allow_null=True, help_text="Dollars per decision asked.")
    five_hour_moved = serializers.FloatField(allow_null=True, help_text="0-1 of the window.")
    week_moved = serializers.FloatField(allow_null=True, help_text="0-1 of the weekly window.")
    week_pct_each = serializers.FloatField(allow_null=True,
                                           help_text="Percent of the week per decision.")
    decisions_per_pct_week = serializers.FloatField(allow_null=True)
    found_per_pct_week = serializers.FloatField(allow_null=True)
    in_use = serializers.BooleanField()
    best = serializers.BooleanField(help_text="The most gold halachot per 1 % of the week.")
    note = serializers.CharField()


class EvaluationsSerializer(serializers.Serializer):
    configurations = EvaluationRowSerializer(many=True)
    in_use = serializers.CharField(allow_null=True, help_text="The decision drains' now.")
    in_use_problem = serializers.CharField()
    backend = serializers.CharField(help_text="HALACHA_EXTRACTOR.")


class UseEvaluationInputSerializer(_NoUnknownFields):
    evaluation = serializers.IntegerField(
        min_value=1, max_value=2**62, allow_null=True,
        help_text="The evaluation whose model and effort the decision drains take; null: the "
        "settings' again.")


class EvaluationsApi(ReadApi):
    @extend_schema(operation_id="evaluations", summary="Each model configuration's latest "
                   "evaluation over the gold set (manage.py evaluate): F1, precision, recall, "
                   "what it used of the week and the 5-hour window, decisions per 1 % of the "
                   "week; the best per quota and the one in use marked",
                   responses={200: EvaluationsSerializer, **error_responses(401, 403,
                                                                          *COMMON_ERRORS)})
    def get(self, request):
        return Response(as_json(evaluation.comparison()))


class UseEvaluationApi(ChangeApi):
    @extend_schema(operation_id="use_evaluation", summary="Run the decision drains with an "
                   "evaluation's model and effort (null: with the settings' again); audited",
                   request=UseEvaluationInputSerializer,
                   responses={200: ActionResultSerializer, **ACTION_ERRORS})
    def post(self, request):
        data = valid_input(UseEvaluationInputSerializer, request)
        try:
            message = evaluation.choose(data.get("evaluation"),
                                        actor=request.user.get_username())
        except (evaluation.EvaluationError, ValueError) as exc:
            raise Conflict(str(exc)) from exc
        return action_done(message)


@method_decorator(page_access, name="dispatch")
@method_decorator(ensure_csrf_cookie, name="dispatch")
class EvaluationsPage(View):
    """The model configurations evaluated over the gold set, side by side; use one for the
    drains (through the API, as the main page's buttons)."""

    def get(self, request):
        return render(request, "halacha/evaluations.html",
                      {"comparison": evaluation.comparison(), **_action_context(request)})


api_urlpatterns = [
    path("operations/evaluations", EvaluationsApi.as_view(), name="evaluations"),
    path("operations/evaluations/use", UseEvaluationApi.as_view(), name="use-evaluation"),
]
page_urlpatterns = [
    path("operations/evaluations", EvaluationsPage.as_view(), name="evaluations"),
]
