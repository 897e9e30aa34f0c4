from __future__ import annotations

from asgiref.sync import sync_to_async

from billing.pricing import format_usd
from billing.selectors import month_start, spend_since

from .auth import KeyInfo
from .models import RequestRecord


def _money(value):
    return None if value is None else format_usd(value)


@sync_to_async
def key_summary(key: KeyInfo) -> dict:
    start = month_start()
    usage = spend_since(start, api_key_id=key.id)
    remaining = None if key.monthly_limit is None else max(key.monthly_limit - usage, 0)
    return {
        "label": key.name,
        "name": key.name,
        "prefix": key.prefix,
        "team": key.team_name,
        "usage": _money(usage),
        "usage_period_start": start.isoformat(),
        "limit": _money(key.monthly_limit),
        "limit_remaining": _money(remaining),
        "rate_limit": {"requests_per_minute": key.rpm_limit, "tokens_per_minute": key.tpm_limit},
        "allowed_models": sorted(key.allowed_models),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


@sync_to_async
def generation_for_team(generation_id: str, team_id: int) -> dict | None:
    record = (
        RequestRecord.objects.select_related("charge", "charge__price", "api_key")
        .filter(generation_id=generation_id, team_id=team_id)
        .first()
    )
    if record is None:
        return None
    charge = getattr(record, "charge", None)
    return {
        "id": record.generation_id,
        "model": record.requested_model,
        "upstream_model": record.upstream_model,
        "status": record.status,
        "http_status": record.http_status,
        "error_type": record.error_type or None,
        "streamed": record.streamed,
        "finish_reason": record.finish_reason or None,
        "user": record.end_user or None,
        "api_key": record.api_key.prefix,
        "tokens_input": record.input_tokens,
        "tokens_cache_write_5m": record.cache_write_5m_tokens,
        "tokens_cache_write_1h": record.cache_write_1h_tokens,
        "tokens_cache_read": record.cache_read_tokens,
        "tokens_output": record.output_tokens,
        "tokens_prompt": record.input_tokens + record.cache_write_5m_tokens
        + record.cache_write_1h_tokens + record.cache_read_tokens,
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
