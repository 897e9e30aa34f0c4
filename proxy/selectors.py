from __future__ import annotations

from django.utils import timezone

from billing.models import RequestRecord
from billing.months import limit_window, window_bounds
from billing.pricing import format_usd, from_units
from billing.selectors import credit_balance, month_spend, spend_by_period
from billing.tokens import KINDS

from . import db, limits
from .auth import KeyInfo
from .runtime import current


def _money(value):
    return None if value is None else format_usd(value)


async def _reserved(counter: limits.Counter):
    standing = await limits.standing(current().limits, counter)
    return from_units(standing[1]) if standing else None


async def key_summary(key: KeyInfo) -> dict:
    """Spend and balance as the portal shows them (billing.selectors); what is reserved for
    requests in flight from the shared limit counters. `usage` is the spend of the key's
    limit period (the calendar month unless the limit resets daily or weekly);
    `usage_daily/weekly/monthly` that of the current day, ISO week and month."""
    now = timezone.now()
    spend = (await db.run(spend_by_period, [key.id], now))[key.id]
    period = key.limit_reset or "monthly"
    usage = spend[period]
    start, end = window_bounds(limit_window(period, now))
    counters = {c.kind: c for c in limits.counters_for(key, now)}
    reserved = await _reserved(counters["key"]) if "key" in counters else None
    remaining = None
    if key.monthly_limit is not None:
        remaining = max(key.monthly_limit - usage - (reserved or 0), 0)
    team: dict = {"name": key.team_name, "monthly_budget": _money(key.team_monthly_budget), "prepaid": key.team_prepaid}
    if key.team_monthly_budget is not None:
        team_spend = await db.run(month_spend, team_id=key.team_id, now=now)
        team_reserved = await _reserved(counters["team"])
        team["usage"] = _money(team_spend)
        team["budget_remaining"] = _money(max(key.team_monthly_budget - team_spend - (team_reserved or 0), 0))
    if key.team_prepaid:
        balance = await db.run(credit_balance, key.team_id, now)
        credit_reserved = await _reserved(counters["credit"])
        team["credit_balance"] = _money(balance)
        team["credit_available"] = _money(max(balance - (credit_reserved or 0), 0))
    return {
        "label": key.name,
        "name": key.name,
        "prefix": key.prefix,
        "team": key.team_name or None,
        "scope": key.scope,
        "usage": _money(usage),
        "usage_daily": _money(spend["daily"]),
        "usage_weekly": _money(spend["weekly"]),
        "usage_monthly": _money(spend["monthly"]),
        "usage_period_start": start.isoformat(),
        "usage_period_end": end.isoformat(),
        "reserved": _money(reserved) if reserved is not None else "0",
        "limit": _money(key.monthly_limit),
        "limit_reset": key.limit_reset,
        "limit_remaining": _money(remaining),
        "rate_limit": {"requests_per_minute": key.rpm_limit, "tokens_per_minute": key.tpm_limit},
        "allowed_models": sorted(key.allowed_models),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "team_limits": team,
    }


async def generation_for_team(generation_id: str, team_id: int) -> dict | None:
    return await db.run(_generation_for_team, generation_id, team_id)


def _generation_for_team(generation_id: str, team_id: int) -> dict | None:
    record = (
        RequestRecord.objects.select_related("charge", "charge__price", "api_key")
        .filter(generation_id=generation_id, team_id=team_id)
        .first()
    )
    if record is None:
        return None
    charge = getattr(record, "charge", None)
    tokens = record.tokens
    return {
        "id": record.generation_id,
        "api": record.api,
        "model": record.requested_model,
        "upstream_model": record.upstream_model,
        "status": record.status,
        "http_status": record.http_status,
        "error_type": record.error_type or None,
        "streamed": record.streamed,
        "finish_reason": record.finish_reason or None,
        "user": record.end_user or None,
        "api_key": record.api_key.prefix,
        **{f"tokens_{kind}": count for kind, count in zip(KINDS, tokens, strict=True)},
        "tokens_prompt": tokens.prompt_tokens,
        "output_estimated": record.output_estimated,
        "total_cost": _money(charge.amount) if charge else None,
        "cost_status": "final" if charge else "pending",
        "price_version": (
            {"id": charge.price.pk, "effective_from": charge.price.effective_from.isoformat()}
            if charge and charge.price else None
        ),
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "upstream_request_id": record.upstream_request_id or None,
        "created_at": record.created.isoformat(),
    }
