"""An Anthropic message → an OpenAI chat.completion."""
from __future__ import annotations

from typing import Any, Protocol

import orjson

from .reasoning import reasoning_details, reasoning_text
from .request import Translated
from .usage import normalize_usage, openai_usage

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# ---------------------------------------------------------------------------------------
# Response
# ---------------------------------------------------------------------------------------

class JsonMode(Protocol):
    """A translated request of any front door: the forced tool emulating JSON mode, if any."""

    @property
    def json_tool(self) -> str | None: ...


def map_finish_reason(stop_reason: str | None, t: JsonMode) -> str:
    """Anthropic stop_reason → OpenAI finish_reason; the forced JSON tool is an answer, not a
    tool call. Unknown or missing reasons become "stop"."""
    reason = _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls" and t.json_tool is not None:
        return "stop"
    return reason


def translate_response(msg: dict, t: Translated, *, completion_id: str, created: int) -> dict:
    """An Anthropic message → an OpenAI ``chat.completion`` (the caller adds ``usage.cost``).

    Text blocks are joined into ``content``; ``tool_use`` blocks become ``tool_calls``;
    thinking blocks become ``reasoning_content`` (the text) and ``reasoning_details`` (with
    signatures, to be sent back), unless the client excluded them. In emulated JSON mode the
    forced tool's input is the ``content`` (compact JSON) and there are no tool calls.
    """
    texts: list[str] = []
    tool_calls: list[dict] = []
    json_input: Any = None
    for block in msg.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            if t.json_tool is not None and block.get("name") == t.json_tool:
                json_input = block.get("input")
            else:
                tool_calls.append({"id": block.get("id"), "type": "function", "function": {
                    "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    if json_input is not None:
        content: str | None = orjson.dumps(json_input).decode()
    else:
        content = "".join(texts) or None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    details = [] if t.exclude_reasoning else reasoning_details(msg.get("content") or ())
    if details:
        message["reasoning_content"] = reasoning_text(msg["content"]) or None
        message["reasoning_details"] = details
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": t.requested_model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": map_finish_reason(msg.get("stop_reason"), t)}],
        "usage": openai_usage(normalize_usage(msg.get("usage"))),
        "system_fingerprint": None,
    }
