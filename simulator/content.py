"""One validating pass over the prompt in cache order (tools → system → messages): the
400s the real API gives for bad blocks, bad ``cache_control`` and altered thinking
signatures, and the numbers input tokens are counted from.

Input tokens = ceil(UTF-8 bytes of the text / 4) + 8, plus 1600 per image. The text is
text blocks and strings, tool_use inputs and tool results, thinking text, plain-text
documents and the JSON of the tool definitions (without their ``cache_control``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from .caching import Breakpoint, Unit, parse_cache_control
from .errors import bad
from .signing import redacted_data_ok, thinking_signature_ok

IMAGE_TOKENS = 1600
BASE_INPUT_TOKENS = 8
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_THINKING_KINDS = frozenset({"thinking", "redacted_thinking"})


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


@dataclass(slots=True)
class Scan:
    """What one validating pass over the request learns: token inputs, the blocks in cache
    order with their breakpoints, and the last user text (where markers are read)."""

    allow_cache_scope: bool = False
    track_units: bool = True  # False when the body has no "cache_control" at all (the hot path)
    text_bytes: int = 0
    images: int = 0
    last_user_text: str = ""
    units: list[Unit] = field(default_factory=list)
    breakpoints: list[Breakpoint] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)  # TTLs of the block being scanned (and its children)

    @property
    def input_tokens(self) -> int:
        return -(-self.text_bytes // 4) + BASE_INPUT_TOKENS + IMAGE_TOKENS * self.images

    def _close_unit(self, role: str, message: int, block: object, where: str) -> None:
        if not self.track_units:
            return
        self.units.append(Unit(role, message, block, -(-self.text_bytes // 4) + IMAGE_TOKENS * self.images))
        if self._pending:
            index = len(self.units) - 1
            self.breakpoints.extend(Breakpoint(index, ttl, f"{where}.cache_control") for ttl in self._pending)
            self._pending.clear()

    def _cache_control(self, block: dict, path: str) -> None:
        if "cache_control" in block:
            ttl = parse_cache_control(block["cache_control"], path, allow_scope=self.allow_cache_scope)
            if ttl is not None:
                self._pending.append(ttl)

    def tools(self, tools: list) -> None:
        for index, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise bad(f"tools.{index}: Input should be a valid dictionary")
        if not any("cache_control" in tool for tool in tools):
            self.text_bytes += len(orjson.dumps(tools))
            self._close_unit("tools", -1, tools, "tools")
            return
        self.text_bytes += 1  # the JSON array's brackets and commas: one byte per tool plus one
        for index, tool in enumerate(tools):
            where = f"tools.{index}"
            self._cache_control(tool, f"{where}.{tool.get('type') or 'custom'}")
            plain = {key: value for key, value in tool.items() if key != "cache_control"}
            self.text_bytes += len(orjson.dumps(plain)) + 1
            self._close_unit("tools", -1, plain, where)

    def system(self, system: object) -> None:
        if isinstance(system, str):
            self.text_bytes += _utf8_len(system)
            self._close_unit("system", -1, system, "system")
        elif isinstance(system, list):
            for j, block in enumerate(system):
                self.block(block, f"system.{j}", tagged=False)
                self._close_unit("system", -1, block, f"system.{j}")
        elif system is not None:
            raise bad("system: Input should be a valid string or list")

    def message(self, message: object, index: int, is_last: bool) -> None:
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise bad(f"{where}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise bad(f"{where}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            self.text_bytes += _utf8_len(content)
            self._close_unit(role, index, content, where)
            text = content
        elif isinstance(content, list):
            texts = []
            for j, block in enumerate(content):
                texts.append(self.block(block, f"{where}.content.{j}"))
                self._close_unit(role, index, block, f"{where}.content.{j}")
            text = " ".join(texts)
        else:
            raise bad(f"{where}.content: " + ("Field required" if content is None else "Input should be a valid list"))
        if not content and not (is_last and role == "assistant"):
            raise bad(
                f"{where}: all messages must have non-empty content except for the optional final assistant message"
            )
        if role == "user":
            self.last_user_text = text

    def block(self, block: object, where: str, tagged: bool = True) -> str:
        """Validate and count one content block; return its text (for the last user text)."""
        if not isinstance(block, dict):
            raise bad(f"{where}: Input should be a valid dictionary")
        kind = block.get("type")
        if not isinstance(kind, str):
            raise bad(f"{where}: Unable to extract tag using discriminator 'type'")
        if kind in _THINKING_KINDS:
            self._thinking(block, kind, where)
            return ""
        self._cache_control(block, f"{where}.{kind}" if tagged else where)
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                raise bad("messages: text content blocks must be non-empty")
            self.text_bytes += _utf8_len(text)
            return text
        if kind == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64" and source.get("media_type") not in IMAGE_MEDIA_TYPES:
                raise bad(
                    f"{where}.image.source.base64.media_type: Input should be "
                    "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                )
            self.images += 1
        elif kind == "tool_use":
            self.text_bytes += len(orjson.dumps(block.get("input")))
        elif kind == "tool_result":
            return self._tool_result(block.get("content"), where)
        elif kind == "document" and (block.get("source") or {}).get("type") == "text":
            self.text_bytes += _utf8_len(block["source"].get("data") or "")
        return ""

    def _tool_result(self, content: object, where: str) -> str:
        if isinstance(content, str):
            self.text_bytes += _utf8_len(content)
            return content
        if isinstance(content, list):
            return " ".join(self.block(b, f"{where}.content.{j}") for j, b in enumerate(content))
        return ""

    def _thinking(self, block: dict, kind: str, where: str) -> None:
        """Thinking blocks sent back must be exactly as returned (signature intact)."""
        if "cache_control" in block:
            raise bad(f"{where}.{kind}.cache_control: Extra inputs are not permitted")
        if kind == "redacted_thinking":
            if not isinstance(block.get("data"), str):
                raise bad(f"{where}.redacted_thinking.data: Field required")
            if not redacted_data_ok(block["data"]):
                raise bad(f"{where}: Invalid `data` in `redacted_thinking` block")
            return
        text, signature = block.get("thinking"), block.get("signature")
        if not isinstance(text, str):
            raise bad(f"{where}.thinking.thinking: Field required")
        if signature is None:
            raise bad(f"{where}.thinking.signature: Field required")
        if not thinking_signature_ok(text, signature):
            raise bad(f"{where}: Invalid `signature` in `thinking` block")
        self.text_bytes += _utf8_len(text)
