"""The audit trail: who created, revoked or changed a key, a limit, a budget, a credit, a
price or a team's status, when, and from where.

Entries are written by signal handlers on the audited models (here for keys and teams,
in `billing.signals` for credits and prices), so a change is logged whichever path made
it. The caller's identity travels in a context variable: the portal's middleware sets it
for each request (source "portal", "admin" or "api", the user, the client address),
management commands wrap their work in `audit_context(source="command")`; anything else
is logged as "system".
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import models

from .models import AuditEntry, Team


@dataclass(frozen=True)
class AuditContext:
    source: str = AuditEntry.Source.SYSTEM
    user: Any = None
    ip: str | None = None
    label: str = ""           # who, when there is no user (a key prefix, a command name)
    # A web request: its `user` and `audit_label` are read when an entry is written
    # (authentication may happen after the context is set, e.g. in a DRF view).
    request: Any = None


_current: ContextVar[AuditContext | None] = ContextVar("tokenhub_audit", default=None)


@contextlib.contextmanager
def audit_context(source: str, *, user=None, ip: str | None = None, label: str = "", request=None):
    token = _current.set(AuditContext(source=source, user=user, ip=ip, label=label, request=request))
    try:
        yield
    finally:
        _current.reset(token)


def _who(ctx: AuditContext):
    user, label = ctx.user, ctx.label
    if ctx.request is not None:
        user = getattr(ctx.request, "user", None) or user
        label = getattr(ctx.request, "audit_label", "") or label
    if user is not None and not isinstance(user, get_user_model()):
        # The management API authenticates an actor: a management key, or a staff session.
        key = getattr(user, "api_key", None)
        if key is not None:
            label = label or f"key {key.prefix}… ({key.name or 'unnamed'})"
            user = None
        else:
            user = getattr(user, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        user = None
    return user, label or (user.get_username() if user is not None else "")


def jsonable(value):
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value.is_finite() else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def snapshot(instance: models.Model, fields: list[str]) -> dict:
    return {f: jsonable(getattr(instance, f)) for f in fields}


def record(action: str, *, target_type: str, target_id="", target: str = "", team: Team | int | None = None,
           before: dict | None = None, after: dict | None = None) -> AuditEntry:
    ctx = _current.get() or AuditContext()
    actor, label = _who(ctx)
    team_id = team.pk if isinstance(team, Team) else team
    return AuditEntry.objects.create(
        actor=actor, actor_label=label[:150], team_id=team_id, action=action, target_type=target_type,
        target_id=str(target_id or ""), target=target[:200], before=before, after=after,
        source=ctx.source, ip=ctx.ip or None,
    )


def changes(before: dict, after: dict) -> tuple[dict, dict]:
    """Only the fields that changed, on both sides."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}
