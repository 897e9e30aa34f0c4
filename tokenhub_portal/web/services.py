"""Portal write operations: sign-up, teams, invitations, keys, alert settings, and the
operators' actions. Views stay thin and call these; every function that acts for a team
takes the caller's Membership (or, for operators, the user) and checks the role itself,
so no caller can forget it."""
from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.selectors import canonical_model_ids
from billing.services import add_credit
from tokenhub_portal.accounts.models import ApiKey, Invitation, Membership, Team
from tokenhub_portal.accounts.services import (
    IssuedKey,
    KeyOperationError,
    create_key,
    revoke_key,
    rotate_webhook_secret,
    set_team_budget,
    set_team_suspended,
    update_key,
    update_team_alerts,
)


class InvitationError(ValueError):
    pass


def unique_team_name(base: str) -> str:
    base = (base.strip() or "team")[:90]
    name, n = base, 1
    while Team.objects.filter(name=name).exists():
        n += 1
        name = f"{base} {n}"
    return name


def create_team(user, name: str) -> Team:
    """A new team owned by `user` (name made unique if taken)."""
    for _ in range(5):
        try:
            with transaction.atomic():
                team = Team.objects.create(name=unique_team_name(name))
                Membership.objects.create(team=team, user=user, role=Membership.Role.OWNER)
                return team
        except IntegrityError:  # a concurrent sign-up took the name
            continue
    raise IntegrityError("could not find a free team name")


@transaction.atomic
def sign_up(*, username: str, email: str, password: str, team_name: str = "",
            invitation: Invitation | None = None):
    """Creates the user and either their own team (owner) or, with a pending invitation,
    their membership of the inviting team."""
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    if invitation is not None:
        accept_invitation(invitation, user)
    else:
        create_team(user, team_name or f"{username}'s team")
    return user


def _require_manager(membership: Membership) -> None:
    if not membership.can_manage:
        raise PermissionDenied("only the team's owners and admins can do this")


# --- invitations -------------------------------------------------------------------------

def invite(membership: Membership, *, email: str, role: str, accept_url) -> Invitation:
    """Creates an invitation and emails its link. `accept_url(token)` builds the link."""
    _require_manager(membership)
    if role == Membership.Role.OWNER or (role == Membership.Role.ADMIN and membership.role != Membership.Role.OWNER):
        raise PermissionDenied("only owners can invite admins; owners cannot be invited")
    invitation = Invitation.objects.create(
        team=membership.team, email=email, role=role, token=secrets.token_urlsafe(32),
        invited_by=membership.user, expires_at=timezone.now() + timedelta(days=settings.INVITATION_DAYS),
    )
    link = accept_url(invitation.token)
    inviter = membership.user.get_full_name() or membership.user.get_username()
    send_mail(
        subject=f"{inviter} invited you to {membership.team.name} on TokenHub",
        message=(f"{inviter} invited you to join the team {membership.team.name} on TokenHub as {role}.\n\n"
                 f"Accept the invitation: {link}\n\nThe link works once and expires on "
                 f"{invitation.expires_at:%Y-%m-%d}."),
        from_email=None, recipient_list=[email],
    )
    return invitation


def pending_invitation(token: str) -> Invitation | None:
    invitation = Invitation.objects.select_related("team").filter(token=token).first()
    return invitation if invitation is not None and invitation.pending else None


def accept_invitation(invitation: Invitation, user) -> Membership:
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if not locked.pending:
            raise InvitationError("this invitation has expired or was already used")
        membership, created = Membership.objects.get_or_create(
            team=locked.team, user=user, defaults={"role": locked.role})
        locked.accepted_at, locked.accepted_by = timezone.now(), user
        locked.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def revoke_invitation(membership: Membership, invitation_id: int) -> Invitation:
    _require_manager(membership)
    invitation = Invitation.objects.get(pk=invitation_id, team=membership.team)  # DoesNotExist → 404
    if invitation.revoked_at is None and invitation.accepted_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
    return invitation


# --- keys --------------------------------------------------------------------------------

def canonical_models(models: list[str] | None) -> list[str]:
    """A model allow-list (ids or aliases) as canonical ids; unknown names are refused."""
    allowed = [m for m in (models or []) if m]
    if allowed:
        known = canonical_model_ids(allowed)
        missing = [m for m in allowed if m not in known]
        if missing:
            raise KeyOperationError(f"unknown model(s): {', '.join(missing)}")
        allowed = list(dict.fromkeys(known[m] for m in allowed))
    return allowed


def issue_key(team: Team | None, *, models: list[str] | None = None, **fields) -> IssuedKey:
    """A new key for `team` (None: an operator key); its model allow-list (ids or aliases)
    is checked against the model table and stored as canonical ids."""
    return create_key(team, allowed_models=canonical_models(models), **fields)


def edit_key(api_key: ApiKey, *, models: list[str] | None = None, **changes) -> ApiKey:
    """Changes a key's settings; `models` (if given) is checked like at creation."""
    if models is not None:
        changes["allowed_models"] = canonical_models(models)
    return update_key(api_key, **changes)


def create_team_key(membership: Membership, **fields) -> IssuedKey:
    """Issues a key for the member's team (owners/admins only)."""
    _require_manager(membership)
    return issue_key(membership.team, created_by=membership.user, **fields)


def revoke_team_key(membership: Membership, key_id: int) -> ApiKey:
    _require_manager(membership)
    api_key = ApiKey.objects.get(pk=key_id, team=membership.team)  # another team's key → DoesNotExist
    return revoke_key(api_key)


# --- team alert settings (owners/admins) --------------------------------------------------

def update_alert_settings(membership: Membership, *, thresholds: list[int], webhook_url: str) -> str | None:
    """Returns the webhook's new signing secret when the URL changed (shown once)."""
    _require_manager(membership)
    return update_team_alerts(membership.team, thresholds=thresholds, webhook_url=webhook_url)


def rotate_team_webhook_secret(membership: Membership) -> str:
    _require_manager(membership)
    return rotate_webhook_secret(membership.team)


# --- operators (staff) ----------------------------------------------------------------------

def _require_staff(user) -> None:
    if not (user.is_authenticated and user.is_staff):
        raise PermissionDenied("operators only")


def operator_add_credit(user, team: Team, amount: Decimal, note: str = ""):
    _require_staff(user)
    return add_credit(team, amount, note=note, created_by=user)


def operator_set_budget(user, team: Team, monthly_budget: Decimal | None, prepaid: bool) -> Team:
    _require_staff(user)
    return set_team_budget(team, monthly_budget, prepaid=prepaid)


def operator_set_suspended(user, team: Team, suspended: bool) -> Team:
    _require_staff(user)
    return set_team_suspended(team, suspended)
