"""Thinking ⇄ reasoning for the Responses API (interim).

The same names and contract as ``proxy.translation.reasoning`` (the shared thinking ⇄
reasoning module being written for Chat Completions); this module goes away once that one
is on main. A signed thinking block travels to the client inside a reasoning item's
``encrypted_content`` and comes back verbatim, so the signature still verifies upstream.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import invalid
from proxy.modelspec import ModelSpec

from .fields import unsupported

THINKING_KINDS = frozenset({"thinking", "redacted_thinking"})
_PREFIX = "thk1."
_EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
_MIN_THINKING_BUDGET = 1024


def reasoning_text(blocks: Iterable[Mapping]) -> str:
    return "".join(b.get("thinking") or "" for b in blocks if b.get("type") == "thinking")


def encode_thinking(blocks: Sequence[Mapping]) -> str:
    """Thinking/redacted blocks → an opaque string (a reasoning item's ``encrypted_content``)."""
    kept = [_exact(b) for b in blocks if b.get("type") in THINKING_KINDS]
    return _PREFIX + base64.urlsafe_b64encode(orjson.dumps(kept)).decode()


def decode_thinking(value: Any, where: str) -> list[dict]:
    """The string back → the exact blocks; a 400 naming ``where`` if it is not one of ours."""
    if not isinstance(value, str) or not value.startswith(_PREFIX):
        raise invalid(f"{where} was not issued by this gateway (it carries no Claude thinking).", where)
    try:
        blocks = orjson.loads(base64.urlsafe_b64decode(value[len(_PREFIX):]))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise invalid(f"{where} is damaged: it cannot be decoded.", where) from None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and b.get("type") in THINKING_KINDS
                                               for b in blocks):
        raise invalid(f"{where} is damaged: it holds no thinking blocks.", where)
    return [_exact(b) for b in blocks]


def _exact(block: Mapping) -> dict:
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data") or ""}
    return {"type": "thinking", "thinking": block.get("thinking") or "", "signature": block.get("signature") or ""}


@dataclass(frozen=True, slots=True)
class Reasoning:
    effort: str | None = None
    budget: int | None = None
    exclude: bool = False
    param: str = "reasoning_effort"


def parse_effort(value: Any, param: str) -> str | None:
    if value is None or value == "none":
        return None
    if not isinstance(value, str) or value not in _EFFORT_BUDGETS:
        raise invalid(f"{param} must be one of none, minimal, low, medium, high, xhigh, max.", param)
    return value


def thinking_fields(r: Reasoning, spec: ModelSpec, max_tokens: int, max_field: str | None) -> tuple[int, dict]:
    """→ (max_tokens to send, {"thinking": {...}}); the budget is fitted under max_tokens."""
    if not spec.thinking:
        raise unsupported(f"{r.param} is not supported by this model.", r.param)
    budget = r.budget or _EFFORT_BUDGETS[r.effort or "medium"]
    if max_tokens <= _MIN_THINKING_BUDGET:
        field = max_field or "max_tokens"
        raise invalid(f"{field} must be greater than {_MIN_THINKING_BUDGET} when {r.param} is set "
                      "(it includes the reasoning tokens).", field)
    return max_tokens, {"thinking": {"type": "enabled", "budget_tokens": min(budget, max_tokens - 1)}}


def tool_turn_lacks_thinking(messages: list[dict]) -> bool:
    """True when the last assistant turn calls tools but does not start with its thinking."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            content = message["content"]
            return any(b["type"] == "tool_use" for b in content) and content[0]["type"] not in THINKING_KINDS
    return False


def merge_output_config(payload: dict, fields: dict) -> None:
    for name, value in fields.items():
        if name == "output_config" and isinstance(payload.get(name), dict):
            payload[name] = {**payload[name], **value}
        else:
            payload[name] = value
