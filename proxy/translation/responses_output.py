"""An Anthropic message → an OpenAI ``response`` object, and the pieces streams share.

Content blocks become output items in order: thinking (and redacted thinking) → a
``reasoning`` item (summary text when ``reasoning.summary`` was asked for; the signed
blocks in ``encrypted_content``), consecutive text blocks → one ``message`` item with one
``output_text`` part, ``tool_use`` → a ``function_call`` (with the client's ``namespace``
when the tool came from one) or a ``custom_tool_call`` (its one string input). In emulated
JSON mode the forced tool's input is the message text.

The object built here always carries ``encrypted_content`` (it is what is stored, and
``previous_response_id`` needs the signatures); ``client_view`` takes it out unless the
request's ``include`` asked for it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from billing.tokens import TokenCounts

from .reasoning import THINKING_KINDS, encode_thinking
from .responses_request import ResponsesRequest
from .responses_tools import CUSTOM

# Anthropic stop_reason → (status, incomplete_details.reason)
_INCOMPLETE = {"max_tokens": "max_output_tokens", "model_context_window_exceeded": "max_output_tokens",
               "refusal": "content_filter"}


def item_id(prefix: str, response_id: str, index: int) -> str:
    """Output item ids derived from the response id (unique without another random draw)."""
    return f"{prefix}_{response_id[5:]}{index:02x}"


def status_of(stop_reason: str | None) -> tuple[str, dict | None]:
    reason = _INCOMPLETE.get(stop_reason) if isinstance(stop_reason, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def reasoning_item(blocks: Sequence[Mapping], t: ResponsesRequest, item_id_: str, summary_text: str) -> dict:
    item: dict[str, Any] = {"id": item_id_, "type": "reasoning", "summary": []}
    if t.summary and summary_text:
        item["summary"] = [{"type": "summary_text", "text": summary_text}]
    item["encrypted_content"] = encode_thinking(blocks)
    return item


def message_item(item_id_: str, text: str, status: str = "completed") -> dict:
    return {"id": item_id_, "type": "message", "status": status, "role": "assistant",
            "content": [output_text_part(text)]}


def output_text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(t: ResponsesRequest, response_id: str, index: int, call_id: str, upstream_name: str,
              arguments: str, status: str = "completed") -> dict:
    """A ``function_call`` or ``custom_tool_call`` item for a tool_use block (``arguments``:
    its input as JSON text)."""
    tool = t.names.client(upstream_name)
    if tool.kind == CUSTOM:
        item = {"id": item_id("ctc", response_id, index), "type": "custom_tool_call", "status": status,
                "call_id": call_id, "name": tool.name, "input": custom_input(arguments)}
    else:
        item = {"id": item_id("fc", response_id, index), "type": "function_call", "status": status,
                "call_id": call_id, "name": tool.name, "arguments": arguments}
    if tool.namespace:
        item["namespace"] = tool.namespace
    return item


def custom_input(arguments: str) -> str:
    """A custom tool's string from the one-string tool's JSON input."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    text = value.get("input") if isinstance(value, dict) else None
    return text if isinstance(text, str) else arguments


def usage_object(u: TokenCounts, reasoning_tokens: int, cost: str | None) -> dict:
    """OpenAI's Responses usage; ``input_tokens`` counts all input, cached or not."""
    input_tokens = u.prompt_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": u.cache_write_5m + u.cache_write_1h},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": min(reasoning_tokens, u.output_tokens)},
        "total_tokens": input_tokens + u.output_tokens,
        "cost": cost,
    }


def thinking_tokens(usage: Any, thinking_chars: int) -> int:
    """Anthropic reports thinking tokens (``output_tokens_details.thinking_tokens``) where it
    can; otherwise a lower bound from the thinking text returned (about 4 characters a token)."""
    details = usage.get("output_tokens_details") if isinstance(usage, Mapping) else None
    reported = details.get("thinking_tokens") if isinstance(details, Mapping) else None
    if type(reported) is int and reported >= 0:
        return reported
    return -(-thinking_chars // 4)


def response_object(t: ResponsesRequest, response_id: str, created_at: int, status: str, output: list[dict],
                    usage: dict | None, *, incomplete: dict | None = None, error: dict | None = None,
                    completed_at: int | None = None) -> dict:
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "completed_at": completed_at, "error": error, "incomplete_details": incomplete, "model": t.requested_model,
        "output": output, "usage": usage, **t.settings,
    }


def client_view(response: dict, t: ResponsesRequest) -> dict:
    """The response as the client asked for it: ``encrypted_content`` only if included."""
    if t.include_encrypted:
        return response
    return without_encrypted(response)


def without_encrypted(response: dict) -> dict:
    output = response.get("output") or []
    if not any("encrypted_content" in item for item in output):
        return response
    return {**response, "output": [{k: v for k, v in item.items() if k != "encrypted_content"} for item in output]}


def translate_message(msg: dict, t: ResponsesRequest, *, response_id: str, created_at: int, completed_at: int,
                      usage: TokenCounts, cost: str | None) -> dict:
    """A whole Anthropic message → the full response object (with ``encrypted_content``)."""
    output: list[dict] = []
    texts: list[str] = []
    thinking: list[Mapping] = []
    thinking_chars = 0

    def flush_text(item_status: str = "completed") -> None:
        if texts:
            output.append(message_item(item_id("msg", response_id, len(output)), "".join(texts), item_status))
            texts.clear()

    def flush_thinking() -> None:
        if thinking:
            output.append(reasoning_item(thinking, t, item_id("rs", response_id, len(output)),
                                         "".join(b.get("thinking") or "" for b in thinking)))
            thinking.clear()

    status, incomplete = status_of(msg.get("stop_reason"))
    for block in msg.get("content") or ():
        kind = block.get("type")
        if kind in THINKING_KINDS:
            flush_text()
            thinking.append(block)
            thinking_chars += len(block.get("thinking") or "")
            continue
        flush_thinking()
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            if t.json_tool is not None and block.get("name") == t.json_tool:
                texts.append(arguments)
                continue
            flush_text()
            output.append(call_item(t, response_id, len(output), block.get("id") or "", block.get("name") or "",
                                    arguments))
    flush_thinking()
    flush_text(status)  # the last message is the one a max_output_tokens cut left incomplete
    reasoning = thinking_tokens(msg.get("usage"), thinking_chars)
    return response_object(t, response_id, created_at, status, output, usage_object(usage, reasoning, cost),
                           incomplete=incomplete, completed_at=completed_at)
