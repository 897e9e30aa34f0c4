from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect

from ..selectors import current_membership


def portal_view(manage: bool = False):
    """Login required; sets request.membership (the user's own membership of the current
    team). `manage`: owners/admins only (403 for members)."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            membership = current_membership(request.user, request.session)
            if membership is None:
                # Operators without a team of their own land on the console, not "create a team".
                return redirect("operator" if request.user.is_staff else "no_team")
            if manage and not membership.can_manage:
                raise PermissionDenied("Only the team's owners and admins can do this.")
            request.membership = membership
            return view(request, *args, **kwargs)

        return login_required(wrapper)

    return decorate


def operator_view(view):
    """Staff only (login required; 403 for everyone else)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("The operator console is for staff users.")
        return view(request, *args, **kwargs)

    return login_required(wrapper)
