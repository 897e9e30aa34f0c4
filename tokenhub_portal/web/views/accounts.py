from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from tokenhub_portal.accounts.models import Invitation, Membership
from tokenhub_portal.accounts.webhooks import WebhookURLError

from .. import selectors, services
from ..forms import AlertSettingsForm, InviteForm, SignUpForm, TeamForm
from ..selectors import SESSION_TEAM, current_membership, open_invitations, team_members
from .base import portal_view


def signup(request):
    token = request.GET.get("invite") or request.POST.get("invite") or ""
    invitation = services.pending_invitation(token) if token else None
    if not settings.SIGNUP_OPEN and invitation is None:
        return render(request, "registration/signup_closed.html", status=403)
    if request.user.is_authenticated:
        return redirect("invite_accept", token) if invitation else redirect("dashboard")
    form = SignUpForm(request.POST or None, invited=invitation is not None,
                      initial={"email": invitation.email} if invitation else None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            user = services.sign_up(username=d["username"], email=d["email"], password=d["password1"],
                                    team_name=d.get("team_name", ""), invitation=invitation)
        except services.InvitationError as exc:
            form.add_error(None, str(exc))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            if invitation is not None:
                request.session[SESSION_TEAM] = invitation.team_id
                messages.success(request, f"Welcome to {invitation.team.name}.")
                return redirect("dashboard")
            messages.success(request, "Your account and team are ready. Create your first API key.")
            return redirect(reverse("key_create") + "?welcome=1")
    return render(request, "registration/signup.html", {"form": form, "invitation": invitation})


def invite_accept(request, token: str):
    invitation = services.pending_invitation(token)
    if invitation is None:
        raise Http404("This invitation is invalid, expired or already used.")
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{settings.LOGIN_URL}?next={request.path}")
        try:
            services.accept_invitation(invitation, request.user)
        except services.InvitationError:
            raise Http404("This invitation is invalid, expired or already used.") from None
        request.session[SESSION_TEAM] = invitation.team_id
        messages.success(request, f"You joined {invitation.team.name}.")
        return redirect("dashboard")
    return render(request, "portal/invite_accept.html", {"invitation": invitation})


@login_required
def no_team(request):
    if current_membership(request.user, request.session) is not None:
        return redirect("dashboard")
    return render(request, "portal/no_team.html", {"form": TeamForm()})


@login_required
@require_POST
def team_create(request):
    form = TeamForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the team a name.")
        return redirect(request.META.get("HTTP_REFERER") or "no_team")
    new_team = services.create_team(request.user, form.cleaned_data["name"])
    request.session[SESSION_TEAM] = new_team.id
    messages.success(request, f"Team {new_team.name} created.")
    return redirect("dashboard")


@login_required
@require_POST
def team_switch(request):
    try:
        team_id = int(request.POST.get("team", ""))
    except ValueError:
        raise Http404 from None
    # Only a team the user belongs to can be selected.
    if not Membership.objects.filter(user=request.user, team_id=team_id).exists():
        raise Http404
    request.session[SESSION_TEAM] = team_id
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = "/"
    return redirect(target)


def _team_page(request, *, invite_form=None, alerts_form=None, status=200):
    m = request.membership
    team = m.team
    return render(request, "portal/team.html", {
        "members": team_members(team), "invitations": open_invitations(team) if m.can_manage else [],
        "invite_form": invite_form or InviteForm(inviter_role=m.role), "create_form": TeamForm(),
        "alerts_form": alerts_form or AlertSettingsForm(initial={
            "thresholds": ", ".join(str(t) for t in team.alert_thresholds or []), "webhook_url": team.webhook_url}),
        "alerts": selectors.recent_alerts(team) if m.can_manage else [],
    }, status=status)


@portal_view()
def team(request):
    return _team_page(request)


@require_POST
@portal_view(manage=True)
def team_invite(request):
    m = request.membership
    form = InviteForm(request.POST, inviter_role=m.role)
    if form.is_valid():
        invitation = services.invite(  # PermissionDenied → 403
            m, email=form.cleaned_data["email"], role=form.cleaned_data["role"],
            accept_url=lambda token: request.build_absolute_uri(reverse("invite_accept", args=[token])))
        messages.success(request, f"Invitation sent to {invitation.email}.")
        return redirect("team")
    return _team_page(request, invite_form=form, status=400)


def _show_secret(request, secret: str):
    """The webhook's signing secret on a page of its own, once (never in a flash message,
    which travels in a cookie or the session table)."""
    response = render(request, "portal/webhook_secret.html", {"secret": secret})
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@portal_view(manage=True)
def team_alerts(request):
    form = AlertSettingsForm(request.POST)
    if form.is_valid():
        try:
            secret = services.update_alert_settings(request.membership, thresholds=form.cleaned_data["thresholds"],
                                                    webhook_url=form.cleaned_data["webhook_url"])
        except WebhookURLError as exc:
            form.add_error("webhook_url", str(exc))
        else:
            if secret:
                return _show_secret(request, secret)
            messages.success(request, "Alert settings saved.")
            return redirect("team")
    return _team_page(request, alerts_form=form, status=400)


@require_POST
@portal_view(manage=True)
def team_webhook_rotate(request):
    try:
        secret = services.rotate_team_webhook_secret(request.membership)
    except ValueError:
        messages.error(request, "Set a webhook URL first.")
        return redirect("team")
    return _show_secret(request, secret)


@portal_view(manage=True)
def team_audit(request):
    """The team's audit log: who changed its keys, limits, budget, credit and status."""
    page = selectors.audit_log(request.membership.team, cursor=request.GET.get("cursor", ""))
    return render(request, "portal/audit.html", {"page": page, "paged": bool(request.GET.get("cursor"))})


@require_POST
@portal_view(manage=True)
def invite_revoke(request, pk: int):
    try:
        services.revoke_invitation(request.membership, pk)
    except Invitation.DoesNotExist:
        raise Http404 from None
    messages.success(request, "Invitation revoked.")
    return redirect("team")
