"""The operator console (staff): every team's numbers, the teams table, and the actions
an operator takes on a team — top up credit, set a budget, suspend or resume, open its
portal pages (read-only)."""
from django.contrib import messages
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from tokenhub_portal.accounts.models import Team

from .. import operator_selectors, selectors, services
from ..forms import AuditFilterForm, BudgetForm, CreditForm, TeamSearchForm
from ..selectors import SESSION_OPERATOR_TEAM
from .base import operator_view
from .charts import stacked_bars


@operator_view
def console(request):
    form = TeamSearchForm(request.GET or None)
    query = form.cleaned_data["q"].strip() if form.is_valid() else ""
    data = operator_selectors.overview()
    rows, more = operator_selectors.teams_table(query)
    return render(request, "operator/console.html", {
        "o": data, "rows": rows, "more": more, "form": form, "query": query,
        "team_chart": stacked_bars(data.days, data.by_team, key="team"),
        "model_chart": stacked_bars(data.days, data.by_model),
    })


def _team_page(request, team: Team, *, credit_form=None, budget_form=None, status=200):
    detail = operator_selectors.team_detail(team)
    return render(request, "operator/team.html", {
        "t": team, "d": detail, "keys": selectors.team_keys(team), "members": selectors.team_members(team),
        "audit": selectors.audit_log(team, page_size=20).entries, "alerts": selectors.recent_alerts(team),
        "credit_form": credit_form or CreditForm(),
        "budget_form": budget_form or BudgetForm(initial={"monthly_budget": team.monthly_budget,
                                                          "prepaid": team.prepaid}),
    }, status=status)


@operator_view
def team(request, pk: int):
    return _team_page(request, get_object_or_404(Team, pk=pk))


@require_POST
@operator_view
def team_credit(request, pk: int):
    team = get_object_or_404(Team, pk=pk)
    form = CreditForm(request.POST)
    if not form.is_valid():
        return _team_page(request, team, credit_form=form, status=400)
    entry = services.operator_add_credit(request.user, team, form.cleaned_data["amount"], form.cleaned_data["note"])
    messages.success(request, f"{entry.amount:+,} USD credited to {team.name}.")
    return redirect("operator_team", team.pk)


@require_POST
@operator_view
def team_budget(request, pk: int):
    team = get_object_or_404(Team, pk=pk)
    form = BudgetForm(request.POST)
    if not form.is_valid():
        return _team_page(request, team, budget_form=form, status=400)
    services.operator_set_budget(request.user, team, form.cleaned_data["monthly_budget"], form.cleaned_data["prepaid"])
    messages.success(request, f"Limits of {team.name} saved; every gateway process applies them at once.")
    return redirect("operator_team", team.pk)


@require_POST
@operator_view
def team_suspend(request, pk: int):
    team = get_object_or_404(Team, pk=pk)
    if request.POST.get("suspended") not in ("0", "1"):
        return HttpResponseBadRequest("suspended must be 1 (suspend) or 0 (resume)")
    suspend = request.POST["suspended"] == "1"
    services.operator_set_suspended(request.user, team, suspend)
    if suspend:
        messages.success(request, f"{team.name} is suspended: its keys get 403 everywhere within seconds.")
    else:
        messages.success(request, f"{team.name} is active again.")
    if request.POST.get("next") == "console":
        return redirect("operator")
    return redirect("operator_team", team.pk)


@require_POST
@operator_view
def team_view_as(request, pk: int):
    """Open the team's portal pages (read-only) until the operator leaves."""
    team = get_object_or_404(Team, pk=pk)
    request.session[SESSION_OPERATOR_TEAM] = team.pk
    return redirect("dashboard")


@require_POST
@operator_view
def leave_team_view(request):
    team_id = request.session.pop(SESSION_OPERATOR_TEAM, None)
    return redirect("operator_team", team_id) if team_id else redirect("operator")


@operator_view
def audit(request):
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    team = None
    if request.GET.get("team", "").isdigit():
        team = Team.objects.filter(pk=int(request.GET["team"])).first()
    page = selectors.audit_log(team, action=filters.get("action", ""), source=filters.get("source", ""),
                               cursor=request.GET.get("cursor", ""))
    return render(request, "operator/audit.html", {"page": page, "form": form, "team": team,
                                                   **_paging(request, page.next_cursor)})


def _paging(request, next_cursor: str | None) -> dict:
    query = request.GET.copy()
    query.pop("cursor", None)
    first = query.urlencode()
    nxt = None
    if next_cursor:
        query["cursor"] = next_cursor
        nxt = query.urlencode()
    return {"first_query": first, "next_query": nxt, "paged": bool(request.GET.get("cursor"))}
