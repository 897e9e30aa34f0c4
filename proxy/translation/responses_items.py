"""Responses API input items → Anthropic ``system`` and turns, by Chat Completions' rules.

Items: ``message`` (role ``user``/``assistant``/``system``/``developer``; content a string
or ``input_text``/``input_image``/``output_text``/``refusal`` parts; ``type`` may be left
out, as the Agents SDK does), ``function_call`` / ``custom_tool_call`` (→ ``tool_use``),
``function_call_output`` / ``custom_tool_call_output`` (→ ``tool_result``) and
``reasoning`` (→ the signed thinking blocks its ``encrypted_content`` carries; without it
the item is only a summary and is skipped). Item ``id``s are never looked up: clients send
ids the server never issued (Codex does, with ``store: false``). Items that record what a
hosted tool did (``web_search_call``, ``local_shell_call``, ...) have no upstream
equivalent — the gateway never produces them — and are skipped; ``item_reference`` is a 400.

System and developer messages are hoisted into ``system``; consecutive same-role items
merge into one turn, tool results first (``messages.Turns``).
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from proxy.errors import invalid

from .caching import Breakpoints
from .fields import wrong_type
from .messages import IMAGE, TEXT, Turns, content_blocks, tool_arguments, tool_id, tool_result_block
from .reasoning import THINKING_KINDS, decode_thinking
from .responses_tools import ToolNames

_TEXT_PART = (TEXT, "text")
_SYSTEM_PARTS = {"input_text": _TEXT_PART, "text": _TEXT_PART}
_USER_PARTS = {"input_text": _TEXT_PART, "text": _TEXT_PART, "input_image": (IMAGE, "image_url")}
_ASSISTANT_PARTS = {"output_text": _TEXT_PART, "input_text": _TEXT_PART, "text": _TEXT_PART,
                    "refusal": (TEXT, "refusal")}
_RESULT_PARTS = {"input_text": _TEXT_PART, "output_text": _TEXT_PART, "text": _TEXT_PART,
                 "input_image": (IMAGE, "image_url")}
_ROLES = frozenset({"user", "assistant", "system", "developer"})
_SKIPPED = frozenset({
    "web_search_call", "file_search_call", "computer_call", "computer_call_output", "code_interpreter_call",
    "image_generation_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
    "apply_patch_call", "apply_patch_call_output", "mcp_call", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "tool_search_call", "tool_search_output", "compaction",
})
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "custom_tool_call": "ctc",
                "custom_tool_call_output": "ctco", "reasoning": "rs"}


def normalize_input(raw: Any) -> list[dict]:
    """``input`` as stored and listed by ``/input_items``: a list of items, each with a
    ``type`` and an ``id`` (assigned where the client sent none), message content as parts."""
    if isinstance(raw, str):
        return [{"id": new_item_id("message"), "type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list) or not raw:
        raise invalid("input must be a string or a non-empty array of input items.", "input")
    items = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise wrong_type(f"input[{i}] must be an object.", f"input[{i}]")
        kind = item.get("type")
        if kind is None and "role" in item:
            item = {"type": "message", **item}
        elif not isinstance(kind, str):
            raise wrong_type(f"input[{i}].type must be a string.", f"input[{i}].type")
        if item["type"] == "message" and isinstance(item.get("content"), str):  # listed as parts, as OpenAI does
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            item = {**item, "content": [{"type": part, "text": item["content"]}]}
        if not isinstance(item.get("id"), str) or not item.get("id"):
            item = {"id": new_item_id(item["type"]), **item}
        items.append(item)
    return items


def new_item_id(kind: str) -> str:
    return f"{_ID_PREFIXES.get(kind, 'item')}_{secrets.token_hex(12)}"


def translate_items(items: Iterable[tuple[str, dict]], names: ToolNames,
                    marks: Breakpoints) -> tuple[list[dict], list[dict]]:
    """(where, item) pairs → (system blocks, Anthropic messages); ``cache_control`` on content
    parts is put on the blocks and collected in ``marks``, as on Chat Completions."""
    system: list[dict] = []
    turns = Turns()
    for where, item in items:
        kind = item.get("type")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise invalid(f"{where}.role must be one of user, assistant, system, developer.", f"{where}.role")
            if role in ("system", "developer"):
                system.extend(content_blocks(item.get("content"), f"{where}.content", _SYSTEM_PARTS, marks, "system"))
            elif role == "user":
                blocks = content_blocks(item.get("content"), f"{where}.content", _USER_PARTS, marks)
                if not blocks:
                    raise invalid(f"{where}.content must be non-empty.", f"{where}.content")
                turns.add("user", blocks)
            else:
                turns.add("assistant", content_blocks(item.get("content"), f"{where}.content", _ASSISTANT_PARTS, marks))
        elif kind in ("function_call", "custom_tool_call"):
            turns.add("assistant", [_tool_use(item, kind, names, where)])
        elif kind in ("function_call_output", "custom_tool_call_output"):
            result = tool_result_block(tool_id(item.get("call_id"), f"{where}.call_id"), item.get("output"),
                                       f"{where}.output", _RESULT_PARTS, marks)
            turns.add("user", [], [result])
        elif kind == "reasoning":
            encrypted = item.get("encrypted_content")
            if encrypted is not None:
                turns.add("assistant", decode_thinking(encrypted, f"{where}.encrypted_content"))
        elif kind in _SKIPPED:
            continue
        elif kind == "item_reference":
            raise invalid(f"{where}: item_reference is not supported; send the item itself, or continue a "
                          "stored response with previous_response_id.", f"{where}.type", code="unsupported_value")
        else:
            raise invalid(f"{where}.type {str(kind)[:64]!r} is not a supported input item type.", f"{where}.type",
                          code="unsupported_value")
    return system, turns.messages()


def _tool_use(item: dict, kind: str, names: ToolNames, where: str) -> dict:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise wrong_type(f"{where}.name must be a non-empty string.", f"{where}.name")
    namespace = item.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise wrong_type(f"{where}.namespace must be a string.", f"{where}.namespace")
    if kind == "function_call":
        arguments = tool_arguments(item.get("arguments"), f"{where}.arguments")
    else:
        text = item.get("input")
        if not isinstance(text, str):
            raise wrong_type(f"{where}.input must be a string.", f"{where}.input")
        arguments = {"input": text}
    return {"type": "tool_use", "id": tool_id(item.get("call_id"), f"{where}.call_id"),
            "name": names.upstream(name, namespace or None), "input": arguments}


def without_thinking(messages: list[dict]) -> list[dict]:
    """Without thinking on, thinking blocks cannot go upstream: drop them, then the turns
    they leave empty (re-merging the neighbours those separated)."""
    if not any(b["type"] in THINKING_KINDS for message in messages for b in message["content"]):
        return messages  # (built by Turns already: nothing to drop, nothing to merge)
    turns = Turns()
    for message in messages:
        blocks = [b for b in message["content"] if b["type"] not in THINKING_KINDS]
        if blocks:
            results = [b for b in blocks if b["type"] == "tool_result"]
            turns.add(message["role"], [b for b in blocks if b["type"] != "tool_result"], results)
    return turns.messages()
