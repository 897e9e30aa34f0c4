"""Claude's extended thinking ⇄ the reasoning fields of OpenAI-style APIs.

In: what the client asks for (``Reasoning``: an effort or a budget, and whether to hide the
result) becomes the ``thinking`` request field in the form the model takes — per the model
table, ``{type: enabled, budget_tokens}`` or ``{type: adaptive}`` with
``output_config.effort`` (Opus 4.7 refuses budgets).

Out: ``thinking`` / ``redacted_thinking`` blocks become OpenRouter's ``reasoning_details``
entries (``reasoning.text`` with its signature, ``reasoning.encrypted`` with the redacted
data) plus the plain text; an opaque string form (``encode_thinking``) carries the same
blocks through APIs that have one field for it (Responses ``encrypted_content``).

Back: those entries, as the client received them, become the blocks again, byte for byte:
Anthropic checks each signature against the exact thinking text, and rejects a tool-use
turn without its thinking while thinking is on. Used by every front door (Chat Completions,
Responses); nothing here does I/O.
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

from .fields import DEFAULT_MAX_TOKENS, unsupported, wrong_type

FORMAT = "anthropic-claude-v1"
THINKING_KINDS = frozenset({"thinking", "redacted_thinking"})
EFFORTS = ("minimal", "low", "medium", "high", "xhigh", "max")
DEFAULT_EFFORT = "medium"  # OpenRouter's, for ``reasoning: {enabled: true}``
MIN_BUDGET = 1024          # Anthropic's smallest budget_tokens
# Thinking budget per effort (LiteLLM's mapping, wire-format §11.1). On budget models it is
# the budget; on adaptive models the room made for thinking when the client sets no max.
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
_ADAPTIVE_EFFORT = {"minimal": "low"}  # output_config.effort has no "minimal"
_TEXT = "reasoning.text"
_ENCRYPTED = "reasoning.encrypted"
_SUMMARY = "reasoning.summary"
_PACKED_PREFIX = "thb1."  # marks an encode_thinking string (thinking blocks, v1)


# --- in: the request ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Reasoning:
    """What the client asked for. ``effort`` or ``budget`` (or neither: the default effort)."""

    effort: str | None = None
    budget: int | None = None
    exclude: bool = False               # think, but return no reasoning to the client
    param: str = "reasoning_effort"     # the field 400s name


def parse_effort(value: Any, param: str) -> str | None:
    """A validated effort; ``"none"`` (thinking off) and null are None."""
    if value is None or value == "none":
        return None
    if not isinstance(value, str) or value not in EFFORTS:
        raise invalid(f"{param} must be one of none, {', '.join(EFFORTS)}.", param)
    return value


def thinking_fields(r: Reasoning, spec: ModelSpec, max_tokens: int, max_field: str | None) -> tuple[int, dict]:
    """(max_tokens to send, the request fields that turn thinking on) for this model.

    OpenAI's output maximum includes reasoning, Anthropic's budget must stay under
    ``max_tokens``: without an explicit maximum the default answer room is added to the
    thinking room; with one, the budget is fitted under it. Adaptive models get the effort
    (a budget is mapped to the smallest effort that allows it) and ``display: summarized``
    unless the reasoning is excluded (Opus 4.7 omits the text by default).
    """
    mode = spec.thinking_mode
    if mode not in ("enabled", "adaptive"):
        raise unsupported(f"{r.param} is not supported by this model (it has no extended thinking).", r.param)
    effort = r.effort or (_effort_for_budget(r.budget) if r.budget is not None else DEFAULT_EFFORT)
    room = r.budget if r.budget is not None else EFFORT_BUDGETS[effort]
    if max_field is None:
        max_tokens = min(room + DEFAULT_MAX_TOKENS, spec.max_output_tokens)
    if mode == "adaptive":
        thinking = {"type": "adaptive", "display": "omitted" if r.exclude else "summarized"}
        return max_tokens, {"thinking": thinking,
                            "output_config": {"effort": _ADAPTIVE_EFFORT.get(effort, effort)}}
    if max_tokens <= MIN_BUDGET:
        field = max_field or "max_completion_tokens"
        raise invalid(f"{field} must be greater than {MIN_BUDGET} when reasoning is on (it includes the "
                      "reasoning tokens).", field)
    return max_tokens, {"thinking": {"type": "enabled", "budget_tokens": min(room, max_tokens - 1)}}


def merge_output_config(payload: dict, fields: dict) -> None:
    """Add ``thinking_fields`` to a payload, merging ``output_config`` with one already there."""
    for name, value in fields.items():
        if name == "output_config" and isinstance(payload.get(name), dict):
            payload[name] = {**payload[name], **value}
        else:
            payload[name] = value


def _effort_for_budget(budget: int) -> str:
    for effort in ("low", "medium", "high", "xhigh"):
        if budget <= EFFORT_BUDGETS[effort]:
            return effort
    return "max"


# --- out: Anthropic blocks → the client's fields -----------------------------------------------

def reasoning_text(blocks: Iterable[Mapping]) -> str:
    """The thinking text of a message's blocks, joined ("" when there is none)."""
    return "".join(block.get("thinking") or "" for block in blocks if block.get("type") == "thinking")


def reasoning_detail(block: Mapping, index: int) -> dict | None:
    """One thinking block as a ``reasoning_details`` entry; None for other blocks."""
    kind = block.get("type")
    if kind == "thinking":
        return {"type": _TEXT, "text": block.get("thinking") or "", "signature": block.get("signature"),
                "format": FORMAT, "index": index}
    if kind == "redacted_thinking":
        return {"type": _ENCRYPTED, "data": block.get("data"), "format": FORMAT, "index": index}
    return None


def reasoning_details(blocks: Iterable[Mapping]) -> list[dict]:
    """Every thinking block of a message, ``index`` counting them from 0 (the position a
    streaming client's accumulator puts each entry at)."""
    details: list[dict] = []
    for block in blocks:
        detail = reasoning_detail(block, len(details))
        if detail is not None:
            details.append(detail)
    return details


# --- back: the client's fields → Anthropic blocks ----------------------------------------------

def thinking_blocks(details: Any, where: str) -> list[dict]:
    """A message's ``reasoning_details`` as returned → thinking blocks, signatures intact.

    Entries of another provider's ``format`` and ``reasoning.summary`` entries cannot go to
    Claude and are left out. An entry that claims to be Claude's but lacks its signature (or
    data) is a 400: sending it without would fail upstream, dropping it silently would
    change the conversation. Entries a stream accumulator left with the same ``index`` are
    merged first.
    """
    if details is None:
        return []
    if not isinstance(details, list):
        raise wrong_type(f"{where} must be an array.", where)
    blocks = []
    for j, detail in enumerate(_merged_by_index(details, where)):
        entry = f"{where}[{j}]"
        kind = detail.get("type")
        fmt = detail.get("format")
        if kind == _SUMMARY or not _is_ours(fmt):
            continue
        if kind == _TEXT:
            text, signature = detail.get("text", ""), detail.get("signature")
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise wrong_type(f"{entry}.text must be a string.", f"{entry}.text")
            if not isinstance(signature, str) or not signature:
                raise invalid(f"{entry}.signature is required: send reasoning_details back exactly as "
                              "they were returned.", f"{entry}.signature")
            blocks.append({"type": "thinking", "thinking": text, "signature": signature})
        elif kind == _ENCRYPTED:
            data = detail.get("data")
            if not isinstance(data, str) or not data:
                raise invalid(f"{entry}.data is required: send reasoning_details back exactly as they "
                              "were returned.", f"{entry}.data")
            blocks.append({"type": "redacted_thinking", "data": data})
        else:
            raise invalid(f"{entry}.type must be 'reasoning.text', 'reasoning.encrypted' or "
                          "'reasoning.summary'.", f"{entry}.type")
    return blocks


def _is_ours(fmt: Any) -> bool:
    """Our format, or none given; a streamed ``format`` some accumulators concatenate is ours too."""
    if fmt is None:
        return True
    return isinstance(fmt, str) and bool(fmt) and fmt.replace(FORMAT, "") == ""


def _merged_by_index(details: list, where: str) -> list[dict]:
    merged: list[dict] = []
    by_index: dict[int, dict] = {}
    for j, detail in enumerate(details):
        if not isinstance(detail, dict):
            raise wrong_type(f"{where}[{j}] must be an object.", f"{where}[{j}]")
        index = detail.get("index")
        if type(index) is int and index in by_index:
            _merge_fragment(by_index[index], detail)
            continue
        entry = dict(detail)
        merged.append(entry)
        if type(index) is int:
            by_index[index] = entry
    return merged


def _merge_fragment(into: dict, fragment: dict) -> None:
    for key, value in fragment.items():
        if key in ("text", "signature", "data") and isinstance(value, str) and isinstance(into.get(key), str):
            into[key] += value
        elif into.get(key) is None:
            into[key] = value


def strip_thinking(messages: list[dict]) -> None:
    """Remove thinking blocks from a history sent with thinking off: Claude ignores them
    then, and rejects them in a final assistant message."""
    for message in messages:
        if message["role"] == "assistant" and any(b["type"] in THINKING_KINDS for b in message["content"]):
            message["content"] = [b for b in message["content"] if b["type"] not in THINKING_KINDS]


def tool_turn_lacks_thinking(messages: list[dict]) -> bool:
    """True when the last assistant turn calls tools but does not start with its thinking:
    Claude rejects such a turn while thinking is on."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            content = message["content"]
            calls_tools = any(block["type"] == "tool_use" for block in content)
            return calls_tools and content[0]["type"] not in THINKING_KINDS
    return False


# --- one opaque string (Responses encrypted_content) -----------------------------------------

def encode_thinking(blocks: Sequence[Mapping]) -> str:
    """Thinking blocks as one opaque, URL-safe string that ``decode_thinking`` reverses."""
    kept = [_thinking_block(block) for block in blocks if block.get("type") in THINKING_KINDS]
    return _PACKED_PREFIX + base64.urlsafe_b64encode(orjson.dumps(kept)).decode().rstrip("=")


def decode_thinking(value: Any, where: str) -> list[dict]:
    """The blocks an ``encode_thinking`` string carries; a 400 naming ``where`` for anything else."""
    if not isinstance(value, str) or not value.startswith(_PACKED_PREFIX):
        raise invalid(f"{where} is not reasoning content this gateway returned.", where)
    body = value[len(_PACKED_PREFIX):]
    try:
        blocks = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise invalid(f"{where} is not reasoning content this gateway returned.", where) from None
    if not isinstance(blocks, list) or not all(_valid_block(block) for block in blocks):
        raise invalid(f"{where} is not reasoning content this gateway returned.", where)
    return blocks


def _thinking_block(block: Mapping) -> dict:
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data")}
    return {"type": "thinking", "thinking": block.get("thinking") or "", "signature": block.get("signature")}


def _valid_block(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    if block.get("type") == "redacted_thinking":
        return isinstance(block.get("data"), str) and set(block) == {"type", "data"}
    return (block.get("type") == "thinking" and isinstance(block.get("thinking"), str)
            and isinstance(block.get("signature"), str) and set(block) == {"type", "thinking", "signature"})
