"""The worst case of a request, held against its limits before it goes upstream: an upper
bound of its input tokens, all priced as the dearest input class, plus ``max_tokens`` of
output. Computed from the upstream (Anthropic) payload, whatever API the client spoke."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from billing.pricing import MTOK, PriceTerms

IMAGE_TOKENS_BOUND = 6_000
_REQUEST_OVERHEAD_TOKENS = 64
_BLOCK_OVERHEAD_TOKENS = 8
_TOOLS_OVERHEAD_TOKENS = 1_024


def estimate_input_tokens_upper_bound(payload: dict) -> int:
    """An upper bound of the input tokens of an upstream payload, for reserving worst-case cost.

    Every token covers at least one UTF-8 byte, so text bytes bound text tokens. Each block
    and message adds a fixed allowance for role/format tokens; an image counts
    ``IMAGE_TOKENS_BOUND`` (Claude downscales images to ~1,600 tokens; the margin covers
    newer high-resolution models). Tool definitions and a native output schema are rendered
    into a prompt we cannot see: count twice their JSON bytes plus a fixed allowance for the
    tool-use system prompt. A native Messages body arrives unchecked, so any shape is read
    without failing (what is not understood counts its JSON bytes).
    """
    total = _REQUEST_OVERHEAD_TOKENS + _blocks_bound(payload.get("system"))
    for message in payload.get("messages", ()):
        total += _BLOCK_OVERHEAD_TOKENS + _blocks_bound(message.get("content"))
    tools = payload.get("tools")
    if tools:
        total += _TOOLS_OVERHEAD_TOKENS + 2 * len(orjson.dumps(tools))
    output_config = payload.get("output_config")
    output_format = output_config.get("format") if isinstance(output_config, dict) else None
    if output_format:
        total += _TOOLS_OVERHEAD_TOKENS + 2 * len(orjson.dumps(output_format))
    return total


def _blocks_bound(content: Any) -> int:
    if not content:
        return 0
    if isinstance(content, str):
        return len(content.encode())
    if not isinstance(content, list):
        return len(orjson.dumps(content))
    total = 0
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            size = len(block["text"].encode())
        elif kind == "image":
            size = IMAGE_TOKENS_BOUND
        elif kind == "tool_use" and isinstance(block.get("name"), str):
            size = len(block["name"]) + len(orjson.dumps(block.get("input")))
        elif kind == "tool_result":
            size = _blocks_bound(block.get("content"))
        else:
            size = len(orjson.dumps(block))
        total += _BLOCK_OVERHEAD_TOKENS + size
    return total


def worst_case_cost(price: PriceTerms, input_tokens_bound: int, max_tokens: int) -> Decimal:
    """Every input token priced as the dearest input class, plus all of max_tokens."""
    dearest = max(Decimal(1), price.cache_write_5m_multiplier, price.cache_write_1h_multiplier,
                  price.cache_read_multiplier)
    return (input_tokens_bound * price.input_per_mtok * dearest + max_tokens * price.output_per_mtok) / MTOK
