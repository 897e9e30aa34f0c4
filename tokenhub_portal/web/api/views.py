"""Management API views: thin — they resolve who acts on which team, validate with the
serializers and call the services; reads come from the selectors.

Team scope: a team's management key acts on its own team (any other team id is a 404,
whether it exists or not). Operators (operator keys, staff sessions) act on every team
and name it with `team` where an endpoint works on one."""
from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import RequestRecord
from billing.months import BadMonth, month_start, parse_month
from billing.reports import statement_csv, statement_for
from billing.selectors import credit_balance, spend_by_period
from billing.services import add_credit
from tokenhub_portal.accounts.models import ApiKey, Team
from tokenhub_portal.accounts.services import (
    KeyOperationError,
    revoke_key,
    set_team_budget,
    set_team_suspended,
    update_team_alerts,
)
from tokenhub_portal.accounts.webhooks import WebhookURLError

from .. import services
from . import serializers as s
from .errors import ApiError
from .filters import RequestFilter
from .idempotency import idempotent
from .pagination import OffsetPage, RequestCursor
from .permissions import IsOperator
from .selectors import team_figures, usage_report

TEAM_PARAM = OpenApiParameter("team", int, description="Operators: the team's id. A team's key acts on its own team.")
IDEMPOTENCY = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                               description="Retries with the same key replay the first answer (24 hours).")


def _not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found.", code="not_found")


def _team_id(raw, param: str = "team") -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"'{param}' must be a team id (an integer).", code="invalid_value", param=param) from None
    if not 1 <= value < 2**63:
        raise ApiError(400, f"'{param}' must be a team id (an integer).", code="invalid_value", param=param)
    return value


class ManagementView(APIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # The database cannot store NUL, nor compare against it: refuse it up front, by name.
        for name, values in request.query_params.lists():
            if "\x00" in name or any("\x00" in v for v in values):
                raise ApiError(400, f"'{name}' must not contain NUL characters.", code="invalid_value", param=name)
        for name, value in kwargs.items():
            if "\x00" in str(value):
                raise ApiError(400, f"'{name}' must not contain NUL characters.", code="invalid_value", param=name)

    def team(self, request, raw=None, *, required: bool = True) -> Team | None:
        """The team the caller acts on; `raw`: the id the client named (query or body)."""
        actor = request.user
        if raw is None:
            raw = request.query_params.get("team")
        if not actor.operator:
            if raw is not None and _team_id(raw) != actor.team.pk:
                raise _not_found(f"Team {raw}")
            return actor.team
        if raw is None:
            if required:
                raise ApiError(400, "Operators name the team this acts on: ?team=ID.", code="missing_required_parameter",
                               param="team")
            return None
        team = Team.objects.filter(pk=_team_id(raw)).first()
        if team is None:
            raise _not_found(f"Team {raw}")
        return team


# --- keys -----------------------------------------------------------------------------------------

def _keys_visible_to(actor) -> Q:
    return Q(revoked_at__isnull=True) & (Q() if actor.operator else Q(team=actor.team))


def _key_data(keys: list[ApiKey]) -> list[dict]:
    spend = spend_by_period([k.pk for k in keys])
    return s.KeySerializer(keys, many=True, context={"spend": spend}).data


class KeysView(ManagementView, generics.GenericAPIView):
    pagination_class = OffsetPage
    serializer_class = s.KeySerializer
    filter_backends = []

    @extend_schema(
        summary="List keys", operation_id="keys_list",
        parameters=[TEAM_PARAM, OpenApiParameter("include_disabled", bool, description="Include disabled keys.")],
        responses=s.KeySerializer(many=True),
    )
    def get(self, request):
        team = self.team(request, required=False)
        keys = ApiKey.objects.filter(_keys_visible_to(request.user)).select_related("created_by")
        if team is not None:
            keys = keys.filter(team=team)
        if request.query_params.get("include_disabled", "").lower() not in ("1", "true", "yes"):
            keys = keys.filter(disabled=False)
        page = self.paginate_queryset(keys.order_by("-created", "-id"))
        return self.get_paginated_response(_key_data(page))

    @extend_schema(
        summary="Create a key", operation_id="keys_create", parameters=[IDEMPOTENCY],
        request=s.KeyCreateSerializer, responses={201: s.KeyCreatedSerializer},
    )
    @idempotent
    def post(self, request):
        form = s.KeyCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        team = self.team(request, form.validated_data.get("team"))
        try:
            issued = services.issue_key(team, created_by=request.user.user, **form.service_kwargs())
        except KeyOperationError as exc:
            raise ApiError(400, str(exc), code="model_not_found", param="models") from None
        issued.api_key.refresh_from_db()
        return Response({"data": _key_data([issued.api_key])[0], "key": issued.plaintext},
                        status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class KeyDetailView(ManagementView):
    def key(self, request, key_hash: str) -> ApiKey:
        key = (ApiKey.objects.filter(_keys_visible_to(request.user), key_hash=key_hash)
               .select_related("created_by").first())
        if key is None:
            raise _not_found(f"Key {key_hash}")
        return key

    @extend_schema(summary="Get a key", operation_id="keys_retrieve", responses=s.KeyEnvelopeSerializer)
    def get(self, request, key_hash: str):
        return Response({"data": _key_data([self.key(request, key_hash)])[0]})

    @extend_schema(summary="Change a key", operation_id="keys_update", parameters=[IDEMPOTENCY],
                   request=s.KeyUpdateSerializer, responses=s.KeyEnvelopeSerializer)
    @idempotent
    def patch(self, request, key_hash: str):
        form = s.KeyUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            key = ApiKey.objects.select_for_update().get(pk=self.key(request, key_hash).pk)
            try:
                services.edit_key(key, **form.service_kwargs())
            except KeyOperationError as exc:
                raise ApiError(400, str(exc), code="model_not_found", param="models") from None
        return Response({"data": _key_data([self.key(request, key_hash)])[0]})

    @extend_schema(summary="Delete (revoke) a key", operation_id="keys_destroy", parameters=[IDEMPOTENCY],
                   responses=s.KeyDeletedSerializer)
    @idempotent
    def delete(self, request, key_hash: str):
        key = self.key(request, key_hash)
        revoke_key(key)  # records keep pointing at it; every gateway process refuses it from the commit on
        return Response({"deleted": True, "hash": key.key_hash})


# --- team ------------------------------------------------------------------------------------------

def _teams():
    return Team.objects.annotate(active_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)))


def _team_detail(team_id: int) -> dict:
    team = _teams().get(pk=team_id)
    team.member_list = list(team.memberships.select_related("user").order_by("created", "id"))
    return s.TeamDetailSerializer(team_figures([team])[0]).data


class TeamView(ManagementView):
    @extend_schema(summary="The team", operation_id="team_retrieve", parameters=[TEAM_PARAM],
                   responses=s.TeamEnvelopeSerializer)
    def get(self, request):
        return Response({"data": _team_detail(self.team(request).pk)})

    @extend_schema(summary="Change the team's budget and alerts", operation_id="team_update",
                   parameters=[TEAM_PARAM, IDEMPOTENCY], request=s.TeamPatchSerializer,
                   responses=s.TeamUpdatedSerializer)
    @idempotent
    def patch(self, request):
        form = s.TeamPatchSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        changes = form.validated_data
        team = self.team(request)
        secret = None
        with transaction.atomic():
            if "budget" in changes:
                set_team_budget(team, changes["budget"])
            if "alert_thresholds" in changes or "webhook_url" in changes:
                try:
                    secret = update_team_alerts(team, thresholds=changes.get("alert_thresholds"),
                                                webhook_url=changes.get("webhook_url"))
                except WebhookURLError as exc:
                    raise ApiError(400, str(exc), code="invalid_value", param="webhook_url") from None
                except ValueError as exc:
                    raise ApiError(400, str(exc), code="invalid_value", param="alert_thresholds") from None
        response = Response({"data": _team_detail(team.pk), "webhook_secret": secret})
        if secret:
            response["Cache-Control"] = "no-store"
        return response


class TeamsView(ManagementView, generics.GenericAPIView):
    permission_classes = [IsOperator]
    pagination_class = OffsetPage
    serializer_class = s.TeamSerializer
    filter_backends = []

    @extend_schema(summary="List teams (operators)", operation_id="teams_list",
                   parameters=[OpenApiParameter("search", str, description="Part of the team's name.")],
                   responses=s.TeamSerializer(many=True))
    def get(self, request):
        teams = _teams().order_by("name", "id")
        if request.query_params.get("search"):
            teams = teams.filter(name__icontains=request.query_params["search"])
        page = list(self.paginate_queryset(teams))
        return self.get_paginated_response(s.TeamSerializer(team_figures(page), many=True).data)


def _operator_team(team_id: int) -> Team:
    team = _teams().filter(pk=team_id).first()
    if team is None:
        raise _not_found(f"Team {team_id}")
    return team


class TeamDetailView(ManagementView):
    permission_classes = [IsOperator]

    @extend_schema(summary="Get a team (operators)", operation_id="teams_retrieve",
                   responses=s.TeamEnvelopeSerializer)
    def get(self, request, team_id: int):
        return Response({"data": _team_detail(_operator_team(team_id).pk)})

    @extend_schema(summary="Change a team (operators)", operation_id="teams_update", parameters=[IDEMPOTENCY],
                   request=s.OperatorTeamPatchSerializer, responses=s.TeamEnvelopeSerializer)
    @idempotent
    def patch(self, request, team_id: int):
        form = s.OperatorTeamPatchSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        team = _operator_team(team_id)
        with transaction.atomic():
            if "budget" in form.validated_data:
                set_team_budget(team, form.validated_data["budget"])
            if "suspended" in form.validated_data:
                set_team_suspended(team, form.validated_data["suspended"])
        return Response({"data": _team_detail(team.pk)})


class TeamCreditsView(ManagementView):
    permission_classes = [IsOperator]

    @extend_schema(summary="Add prepaid credit (operators)", operation_id="teams_credits_create",
                   parameters=[IDEMPOTENCY], request=s.CreditSerializer, responses={201: s.CreditEnvelopeSerializer})
    @idempotent
    def post(self, request, team_id: int):
        form = s.CreditSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        team = _operator_team(team_id)
        entry = add_credit(team, form.validated_data["amount"], note=form.validated_data["note"],
                           created_by=request.user.user)
        data = {"id": entry.pk, "amount": entry.amount, "kind": entry.kind, "note": entry.note,
                "created_at": entry.created, "credit_balance": credit_balance(team.pk)}
        return Response({"data": s.CreditCreatedSerializer(data).data}, status=status.HTTP_201_CREATED)


# --- usage ------------------------------------------------------------------------------------------

class RequestsView(ManagementView, generics.ListAPIView):
    serializer_class = s.RequestSerializer
    pagination_class = RequestCursor
    filterset_class = RequestFilter

    def get_queryset(self):
        qs = RequestRecord.objects.select_related("api_key", "charge")
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller
            return qs.none()
        team = self.team(self.request, required=False)
        return qs.filter(team=team) if team is not None else qs

    @extend_schema(summary="The request log", operation_id="requests_list", parameters=[TEAM_PARAM])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class UsageView(ManagementView):
    @extend_schema(
        summary="Usage grouped by day, model, key or user", operation_id="usage_retrieve",
        parameters=[
            OpenApiParameter("group_by", str, enum=["day", "model", "key", "user"], description="Default: day."),
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="Start (inclusive); default: this month's."),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="End (exclusive); default: now."),
            TEAM_PARAM,
        ],
        responses=s.UsageSerializer,
    )
    def get(self, request):
        form = s.UsageQuerySerializer(data=request.query_params.dict())
        form.is_valid(raise_exception=True)
        q = form.validated_data
        team = self.team(request, q.get("team"))
        start: datetime = q.get("from") or month_start()
        end: datetime = q.get("to") or timezone.now()
        rows, total = usage_report(team, q["group_by"], start, end)
        return Response(s.UsageSerializer({"group_by": q["group_by"], "from": start, "to": end, "data": rows,
                                           "total": total}).data)


class StatementView(ManagementView):
    @extend_schema(
        summary="A monthly statement", operation_id="statements_retrieve",
        parameters=[OpenApiParameter("format", str, enum=["json", "csv"], description="Default: json."), TEAM_PARAM],
        responses={200: OpenApiResponse(s.StatementEnvelopeSerializer, description="JSON, or CSV with ?format=csv"),
                   (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)},
    )
    def get(self, request, month: str):
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "csv"):
            raise ApiError(400, "'format' must be json or csv.", code="invalid_value", param="format")
        try:
            day = parse_month(month)
        except BadMonth as exc:
            raise ApiError(400, str(exc), code="invalid_value", param="month") from None
        team = self.team(request)
        # As the portal shows it: a closed month's stored statement, otherwise the live figures.
        st = statement_for(team, day)
        if fmt == "csv":
            response = HttpResponse(statement_csv(st), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="tokenhub-{team.pk}-{st.label}.csv"'
            return response
        return Response({"data": s.StatementSerializer(st).data})
