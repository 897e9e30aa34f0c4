"""Prompt-caching breakpoints: ``cache_control`` as OpenRouter and LiteLLM spell it.

``{"type": "ephemeral", "ttl"?: "5m" | "1h"}`` on a content part, a message (LiteLLM: its
last block), a tool definition (beside ``type``/``function``, or inside ``function``) or the
request itself (one breakpoint on the last cacheable block of the prompt) becomes the same
``cache_control`` on the Anthropic block or tool. The request's breakpoints are checked the
way Anthropic checks them, but as 400s naming the client's field: at most 4, and in prompt
order (tools → system → messages) no 1-hour breakpoint after a 5-minute one.
"""
from __future__ import annotations

from typing import Any

from proxy.errors import invalid

from .fields import wrong_type

MAX_BREAKPOINTS = 4
TTLS = ("5m", "1h")
_SECTIONS = {"tools": 0, "system": 1, "messages": 2}
_UNCACHEABLE = frozenset({"thinking", "redacted_thinking"})


def parse_cache_control(value: Any, where: str) -> dict | None:
    """A validated copy of a ``cache_control`` (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type(f"{where} must be an object like {{\"type\": \"ephemeral\"}}.", where)
    for key in value:
        if key not in ("type", "ttl"):
            raise invalid(f"{where}.{str(key)[:32]} is not supported; cache_control takes 'type' and 'ttl'.",
                          f"{where}.{str(key)[:32]}")
    if value.get("type") != "ephemeral":
        raise invalid(f"{where}.type must be 'ephemeral'.", f"{where}.type")
    ttl = value.get("ttl")
    if ttl is None:
        return {"type": "ephemeral"}
    if ttl not in TTLS:
        raise invalid(f"{where}.ttl must be '5m' or '1h'.", f"{where}.ttl")
    return {"type": "ephemeral", "ttl": ttl}


class Breakpoints:
    """The cache breakpoints of one request, collected while it is translated."""

    __slots__ = ("_points",)

    def __init__(self) -> None:
        self._points: list[tuple[int, int, str, str]] = []  # (section, seen order, client field, ttl)

    def mark(self, target: dict, value: Any, where: str, section: str) -> None:
        """Validate ``value`` (the client's ``cache_control`` at ``where``) and put it on the
        Anthropic block or tool ``target``."""
        control = parse_cache_control(value, where)
        if control is None:
            return
        if target.get("type") in _UNCACHEABLE:
            raise invalid(f"{where}: thinking cannot carry a cache breakpoint.", where)
        target["cache_control"] = control
        self._points.append((_SECTIONS[section], len(self._points), where, control.get("ttl", "5m")))

    def mark_last(self, payload: dict, value: Any, where: str = "cache_control") -> None:
        """Automatic caching: one breakpoint on the last cacheable block of the prompt (the
        messages, else the system prompt, else the tools); none if that block has one."""
        control = parse_cache_control(value, where)
        if control is None:
            return
        for section, blocks in (("messages", _message_blocks(payload)), ("system", payload.get("system") or ()),
                                ("tools", payload.get("tools") or ())):
            for block in reversed(list(blocks)):
                if block.get("type") in _UNCACHEABLE:
                    continue
                if "cache_control" not in block:
                    self.mark(block, control, where, section)
                return

    def check(self) -> None:
        """At most 4 breakpoints; a 1h one never after a 5m one (Anthropic's rules)."""
        points = sorted(self._points)
        if len(points) > MAX_BREAKPOINTS:
            where = points[MAX_BREAKPOINTS][2]
            raise invalid(f"At most {MAX_BREAKPOINTS} cache_control breakpoints are allowed per request "
                          f"(found {len(points)}); {where} is one too many.", where)
        seen_5m = False
        for _, _, where, ttl in points:
            if ttl == "1h" and seen_5m:
                raise invalid(f"{where}: a 1h cache breakpoint cannot come after a 5m one (the prompt is "
                              "cached in the order tools, system, messages).", where)
            seen_5m = seen_5m or ttl == "5m"

    def __len__(self) -> int:
        return len(self._points)


def _message_blocks(payload: dict) -> list[dict]:
    """The top-level blocks of the messages in prompt order (a tool result is one block)."""
    blocks: list[dict] = []
    for message in payload.get("messages") or ():
        blocks.extend(message["content"])
    return blocks
