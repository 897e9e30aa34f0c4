"""The read endpoints of the API: models, the calling key, one generation."""
from __future__ import annotations

import re
from datetime import UTC, datetime

from django.utils import timezone

from billing.pricing import format_usd

from . import selectors
from .api import api_endpoint, json_response
from .catalog import CatalogEntry, model_not_found, visible_to
from .errors import GatewayError
from .protocols.messages import error_shape
from .runtime import current

GENERATION_ID = re.compile(r"(chatcmpl-|gen-|resp_)[0-9A-Za-z_-]{1,64}")


def model_payload(entry: CatalogEntry) -> dict:
    price = entry.price_at(timezone.now())
    pricing = None
    if price is not None:
        rate = price.input_per_mtok
        pricing = {
            "unit": "USD per 1M tokens",
            "input": format_usd(rate),
            "output": format_usd(price.output_per_mtok),
            "cache_read": format_usd(rate * price.cache_read_multiplier),
            "cache_write_5m": format_usd(rate * price.cache_write_5m_multiplier),
            "cache_write_1h": format_usd(rate * price.cache_write_1h_multiplier),
            "effective_from": price.effective_from.isoformat(),
        }
    return {
        "id": entry.spec.public_id,
        "object": "model",
        "created": entry.created,
        "owned_by": "anthropic",
        "tier": entry.tier,
        "aliases": list(entry.aliases),
        "upstream_model": entry.spec.upstream_id,
        "context_window": entry.spec.context_window,
        "max_output_tokens": entry.spec.max_output_tokens,
        "lifecycle": entry.lifecycle,
        "retired_on": entry.retired_on,
        "successor": entry.successor,
        "recommended": entry.recommended,
        "pricing": pricing,
    }


def anthropic_model_payload(entry: CatalogEntry) -> dict:
    """Anthropic's model object (Claude Code's model discovery reads `id` and `display_name`)."""
    return {"type": "model", "id": entry.spec.public_id, "display_name": f"Claude {entry.tier}",
            "created_at": datetime.fromtimestamp(entry.created, UTC).isoformat().replace("+00:00", "Z")}


def speaks_anthropic(request) -> bool:
    return "anthropic-version" in request.headers


@api_endpoint("GET", errors=error_shape, management=True)
async def models_list(request, key):
    """OpenAI's list, or Anthropic's when the request carries `anthropic-version`."""
    entries = [e for e in (await current().catalog.get()).entries if visible_to(e, key)]
    if not speaks_anthropic(request):
        return json_response({"object": "list", "data": [model_payload(e) for e in entries]})
    data = [anthropic_model_payload(e) for e in entries]
    return json_response({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None})


@api_endpoint("GET", errors=error_shape, management=True)
async def model_detail(request, key):
    model_id = request.path.split("/models/", 1)[1]
    entry = (await current().catalog.get()).resolve(model_id)
    if entry is None or not visible_to(entry, key):
        raise model_not_found(model_id)
    return json_response(anthropic_model_payload(entry) if speaks_anthropic(request) else model_payload(entry))


@api_endpoint("GET", management=True)
async def key_info(request, key):
    return json_response({"data": await selectors.key_summary(key)})


@api_endpoint("GET", management=True)
async def generation(request, key):
    generation_id = request.query.get("id", "").strip()
    if not generation_id:
        raise GatewayError(400, "Missing required query parameter 'id'.", param="id", code="missing_required_parameter")
    if not GENERATION_ID.fullmatch(generation_id):
        raise GatewayError(404, f"Generation {generation_id!r} not found.", param="id", code="generation_not_found")
    data = await selectors.generation_for_team(generation_id, key.team_id)
    if data is None:
        raise GatewayError(404, f"Generation {generation_id} not found.", param="id", code="generation_not_found")
    return json_response({"data": data})
