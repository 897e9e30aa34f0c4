from django.contrib import admin
from django.urls import include, path, re_path

from proxy.ops import metrics_view

from . import views

MONTH = r"(?P<month>\d{4}-\d{2})"

urlpatterns = [
    path("", include("tokenhub_portal.web.api.urls")),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", views.dashboard, name="dashboard"),
    path("keys/", views.keys, name="keys"),
    path("keys/new/", views.key_create, name="key_create"),
    path("keys/<int:pk>/revoke/", views.key_revoke, name="key_revoke"),
    path("requests/", views.request_log, name="requests"),
    path("requests/<str:generation_id>/", views.request_detail, name="request_detail"),
    path("reports/", views.reports, name="reports"),
    re_path(rf"^reports/{MONTH}/$", views.report, name="report"),
    re_path(rf"^reports/{MONTH}\.csv$", views.report_csv, name="report_csv"),
    re_path(rf"^reports/{MONTH}/statement/$", views.statement, name="statement"),
    re_path(rf"^reports/{MONTH}\.pdf$", views.statement_pdf, name="statement_pdf"),
    path("team/", views.team, name="team"),
    path("team/new/", views.team_create, name="team_create"),
    path("team/switch/", views.team_switch, name="team_switch"),
    path("team/invite/", views.team_invite, name="team_invite"),
    path("team/alerts/", views.team_alerts, name="team_alerts"),
    path("team/webhook/rotate/", views.team_webhook_rotate, name="team_webhook_rotate"),
    path("team/audit/", views.team_audit, name="team_audit"),
    path("team/invitations/<int:pk>/revoke/", views.invite_revoke, name="invite_revoke"),
    path("invite/<str:token>/", views.invite_accept, name="invite_accept"),
    path("welcome/", views.no_team, name="no_team"),
    # The operator console (staff).
    path("operator/", views.operator.console, name="operator"),
    path("operator/audit/", views.operator.audit, name="operator_audit"),
    path("operator/leave/", views.operator.leave_team_view, name="operator_leave"),
    path("operator/teams/<int:pk>/", views.operator.team, name="operator_team"),
    path("operator/teams/<int:pk>/credit/", views.operator.team_credit, name="operator_team_credit"),
    path("operator/teams/<int:pk>/budget/", views.operator.team_budget, name="operator_team_budget"),
    path("operator/teams/<int:pk>/suspend/", views.operator.team_suspend, name="operator_team_suspend"),
    path("operator/teams/<int:pk>/view/", views.operator.team_view_as, name="operator_team_view"),
]

handler404 = "tokenhub_portal.web.api.errors.page_not_found"
