"""OpenAI chat messages → Anthropic system blocks and alternating turns."""
from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from proxy.errors import invalid
from proxy.modelspec import ModelSpec

from .caching import Breakpoints
from .fields import unsupported, wrong_type
from .images import image_block
from .reasoning import thinking_blocks

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_TOOL_ID_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")

# Content parts a role may carry: part type → (TEXT or IMAGE, the field holding it).
TEXT, IMAGE = "text", "image"
_SYSTEM_PARTS = {"text": (TEXT, "text")}
_USER_PARTS = {"text": (TEXT, "text"), "image_url": (IMAGE, "image_url")}
_ASSISTANT_PARTS = {"text": (TEXT, "text"), "refusal": (TEXT, "refusal")}
_TOOL_PARTS = _USER_PARTS
_UNSUPPORTED_PARTS = {
    "input_audio": "Audio input (input_audio content parts) is not supported by Claude models.",
    "file": "file content parts are not supported by this gateway; send images as image_url parts.",
    "input_file": "input_file content parts are not supported by this gateway; send images as input_image parts.",
}


class Turns:
    """Anthropic's alternating turns, built message by message: consecutive messages of one
    role merge into one turn, and a user turn keeps its ``tool_result`` blocks first
    (Anthropic's rule, §5.4), so tool results and user text in a row become one user turn."""

    __slots__ = ("_turns",)

    def __init__(self) -> None:
        self._turns: list[tuple[str, list[dict], list[dict]]] = []  # (role, tool_results, other blocks)

    def add(self, role: str, blocks: list[dict], results: list[dict] | None = None) -> None:
        if not blocks and not results:
            return
        if self._turns and self._turns[-1][0] == role:
            self._turns[-1][1].extend(results or ())
            self._turns[-1][2].extend(blocks)
        else:
            self._turns.append((role, list(results or ()), blocks))

    def __bool__(self) -> bool:
        return bool(self._turns)

    def messages(self) -> list[dict]:
        return [{"role": role, "content": results + blocks} for role, results, blocks in self._turns]


# --- messages ------------------------------------------------------------------------------

def translate_messages(raw: Any, marks: Breakpoints | None = None) -> tuple[list[dict], list[dict]]:
    """Hoist system/developer messages, translate the rest and merge same-role turns (``Turns``).
    ``cache_control`` on parts and messages is put on the blocks and collected in ``marks``."""
    marks = Breakpoints() if marks is None else marks
    if not isinstance(raw, list) or not raw:
        raise invalid("messages must be a non-empty array.", "messages")
    system: list[dict] = []
    turns = Turns()
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise wrong_type(f"{where} must be an object.", where)
        role = message.get("role")
        results: list[dict] = []
        if role in ("system", "developer"):
            blocks = content_blocks(message.get("content"), f"{where}.content", _SYSTEM_PARTS, marks, "system")
            _mark_message(message, blocks, where, marks, "system")
            system.extend(blocks)
            continue
        if role == "user":
            blocks = content_blocks(message.get("content"), f"{where}.content", _USER_PARTS, marks)
            if not blocks:
                raise invalid(f"{where}.content must be non-empty.", f"{where}.content")
            _mark_message(message, blocks, where, marks)
        elif role == "assistant":
            blocks = _assistant_blocks(message, where, marks)
            if not blocks:
                continue
            _mark_message(message, blocks, where, marks)
        elif role == "tool":
            results, blocks = [_tool_result_block(message, where, marks)], []
            _mark_message(message, results, where, marks)
        elif role == "function":
            raise unsupported("The deprecated 'function' role is not supported; send tool results "
                               "as role 'tool' with a tool_call_id.", f"{where}.role")
        else:
            raise invalid(f"{where}.role must be one of system, developer, user, assistant, tool.",
                          f"{where}.role")
        turns.add("assistant" if role == "assistant" else "user", blocks, results)
    if not turns:
        raise invalid("messages must contain at least one user or assistant message.", "messages")
    return system, turns.messages()


def _mark_message(message: dict, blocks: list[dict], where: str, marks: Breakpoints,
                  section: str = "messages") -> None:
    """A message-level ``cache_control`` (LiteLLM's spelling) marks the message's last block."""
    value = message.get("cache_control")
    if value is None:
        return
    if not blocks:
        raise invalid(f"{where}.cache_control needs a message with content.", f"{where}.cache_control")
    marks.mark(blocks[-1], value, f"{where}.cache_control", section)


def content_blocks(content: Any, where: str, allowed: dict[str, tuple[str, str]], marks: Breakpoints,
                   section: str = "messages") -> list[dict]:
    """String or content parts → Anthropic blocks; ``allowed`` maps each part type the role
    may carry to (TEXT or IMAGE, the field holding it). Whitespace-only text is dropped
    (Anthropic rejects empty text blocks), unless it carries a cache breakpoint (a 400)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise wrong_type(f"{where} must be a string or an array of content parts.", where)
    blocks = []
    for j, part in enumerate(content):
        part_where = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            raise wrong_type(f"{part_where} must be an object with a string 'type'.", part_where)
        if kind not in allowed:
            message = _UNSUPPORTED_PARTS.get(kind, f"Content part type {kind[:64]!r} is not allowed here.")
            raise invalid(message, part_where, code="unsupported_value")
        form, name = allowed[kind]
        if form == IMAGE:
            block = image_block(part.get(name), f"{part_where}.{name}")
        else:
            text = part.get(name)  # a text part carries "text", a refusal part "refusal"
            if not isinstance(text, str):
                raise wrong_type(f"{part_where}.{name} must be a string.", f"{part_where}.{name}")
            if not text.strip():
                if part.get("cache_control") is not None:
                    raise invalid(f"{part_where}: a cache breakpoint needs a non-empty text part.",
                                  f"{part_where}.cache_control")
                continue
            block = {"type": "text", "text": text}
        marks.mark(block, part.get("cache_control"), f"{part_where}.cache_control", section)
        blocks.append(block)
    return blocks



def _assistant_blocks(message: dict, where: str, marks: Breakpoints) -> list[dict]:
    """Thinking blocks (from ``reasoning_details``) first, then text, then one ``tool_use``
    per tool call (§11.5). Thinking alone, with no answer, is no turn (it is dropped)."""
    if message.get("function_call") is not None:
        raise unsupported("The deprecated assistant 'function_call' is not supported; use 'tool_calls'.",
                           f"{where}.function_call")
    thinking = thinking_blocks(message.get("reasoning_details"), f"{where}.reasoning_details")
    blocks = content_blocks(message.get("content"), f"{where}.content", _ASSISTANT_PARTS, marks)
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            raise wrong_type(f"{where}.tool_calls must be an array.", f"{where}.tool_calls")
        for j, call in enumerate(tool_calls):
            blocks.append(_tool_use_block(call, f"{where}.tool_calls[{j}]"))
    return thinking + blocks if blocks else []


def _tool_use_block(call: Any, where: str) -> dict:
    if not isinstance(call, dict):
        raise wrong_type(f"{where} must be an object.", where)
    if call.get("type") not in (None, "function"):
        raise invalid(f"{where}.type must be 'function'.", f"{where}.type", code="unsupported_value")
    function = call.get("function")
    if not isinstance(function, dict):
        raise wrong_type(f"{where}.function must be an object.", f"{where}.function")
    return {
        "type": "tool_use",
        "id": tool_id(call.get("id"), f"{where}.id"),
        "name": tool_name(function.get("name"), f"{where}.function.name"),
        "input": tool_arguments(function.get("arguments"), f"{where}.function.arguments"),
    }


def tool_arguments(arguments: Any, where: str) -> dict:
    """``arguments`` is a JSON-encoded object; "" (a call without arguments) means {}."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise wrong_type(f"{where} must be a JSON-encoded string.", where)
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise invalid(f"{where} is not valid JSON.", where) from None
    if not isinstance(value, dict):
        raise invalid(f"{where} must encode a JSON object.", where)
    return value


def tool_id(value: Any, where: str) -> str:
    """Anthropic ids must match ``^[a-zA-Z0-9_-]+$``; foreign ids are rewritten the same
    way on the call and on its result, with a hash suffix so distinct ids stay distinct."""
    if not isinstance(value, str) or not value:
        raise wrong_type(f"{where} must be a non-empty string.", where)
    if _TOOL_ID.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    return f"{_TOOL_ID_BAD_CHARS.sub('_', value)[:64]}_{digest}"


def tool_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise invalid(f"{where} must be 1-64 characters: letters, digits, underscores or dashes.", where)
    return name


def _tool_result_block(message: dict, where: str, marks: Breakpoints) -> dict:
    return tool_result_block(tool_id(message.get("tool_call_id"), f"{where}.tool_call_id"), message.get("content"),
                             f"{where}.content", _TOOL_PARTS, marks)


def tool_result_block(tool_use_id: str, content: Any, where: str, allowed: dict[str, tuple[str, str]],
                      marks: Breakpoints) -> dict:
    """A tool's result: a string, or content parts (text and images)."""
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
    if isinstance(content, str):
        if content.strip():
            block["content"] = content
    else:
        blocks = content_blocks(content, where, allowed, marks)
        if blocks:
            block["content"] = blocks
    return block


def history_stub_tools(messages: list[dict]) -> list[dict]:
    """Anthropic needs tool definitions whenever the history holds ``tool_use`` blocks; a
    client that sends none offers no tools, so each used name gets an inert stub."""
    names = {block["name"]: None for message in messages if message["role"] == "assistant"
             for block in message["content"] if block["type"] == "tool_use"}
    return [{"name": name, "description": "Used earlier in this conversation; not available now.",
             "input_schema": {"type": "object"}} for name in names]


def finish_prefill(messages: list[dict], spec: ModelSpec, *, thinking: bool) -> None:
    """A trailing assistant message is a prefill: allowed only where the model accepts it,
    never with thinking, and it must not end in whitespace (Anthropic rejects that)."""
    last = messages[-1]
    if last["role"] != "assistant":
        return
    if not spec.prefill:
        raise invalid("This model does not support prefill: the last message must not be an "
                      "assistant message.", "messages")
    if thinking:
        raise invalid("A final assistant message (prefill) cannot be combined with reasoning.", "messages")
    tail = last["content"][-1]
    if tail["type"] == "text":
        tail["text"] = tail["text"].rstrip()
