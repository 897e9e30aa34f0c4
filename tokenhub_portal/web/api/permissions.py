"""Scope checks: management actors only; operator-only endpoints."""
from __future__ import annotations

from rest_framework import permissions

from .errors import ApiError


class IsManager(permissions.BasePermission):
    """A management key (team or operator) or a staff session."""

    def has_permission(self, request, view):
        actor = request.user
        if actor is None or not getattr(actor, "is_authenticated", False):
            return False  # → 401 with WWW-Authenticate
        if not actor.manages:
            if actor.api_key is not None:
                raise ApiError(403, "This is an inference key: the management API takes a management key "
                                    "(`manage.py issue_key --management`, or the portal's keys page).",
                               code="management_key_required")
            raise ApiError(403, "Only staff users may use the management API with a browser session; "
                                "use a management key.", code="staff_required")
        return True


class IsOperator(IsManager):
    """Operator keys and staff sessions: the endpoints that act across teams."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if not request.user.operator:
            raise ApiError(403, "Only operators (operator keys, staff) may manage teams.", code="operator_required")
        return True
