"""One validating pass over the prompt (system, messages, tools): the 400s the real API
gives for bad content blocks, and the numbers input tokens are counted from."""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from .errors import bad

IMAGE_TOKENS = 1600
BASE_INPUT_TOKENS = 8
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


@dataclass(slots=True)
class Scan:
    """What one validating pass over the request learns: token inputs and the last user text."""

    text_bytes: int = 0
    images: int = 0
    last_user_text: str = ""

    def block(self, block: object, where: str) -> str:
        """Validate and count one content block; return its text (for the last user text)."""
        if not isinstance(block, dict):
            raise bad(f"{where}: Input should be a valid dictionary")
        kind = block.get("type")
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
            return self.tool_result(block.get("content"), where)
        elif kind == "thinking":
            self.text_bytes += _utf8_len(block.get("thinking") or "")
        elif kind == "document" and (block.get("source") or {}).get("type") == "text":
            self.text_bytes += _utf8_len(block["source"].get("data") or "")
        return ""

    def tool_result(self, content: object, where: str) -> str:
        if isinstance(content, str):
            self.text_bytes += _utf8_len(content)
            return content
        if isinstance(content, list):
            return " ".join(self.block(b, f"{where}.content.{j}") for j, b in enumerate(content))
        return ""

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
            text = content
        elif isinstance(content, list):
            text = " ".join(self.block(b, f"{where}.content.{j}") for j, b in enumerate(content))
        else:
            raise bad(f"{where}.content: " + ("Field required" if content is None else "Input should be a valid list"))
        if not content and not (is_last and role == "assistant"):
            raise bad(
                f"{where}: all messages must have non-empty content except for the optional final assistant message"
            )
        if role == "user":
            self.last_user_text = text

    def system(self, system: object) -> None:
        if isinstance(system, str):
            self.text_bytes += _utf8_len(system)
        elif isinstance(system, list):
            for j, block in enumerate(system):
                self.block(block, f"system.{j}")
        elif system is not None:
            raise bad("system: Input should be a valid string or list")

    @property
    def input_tokens(self) -> int:
        return -(-self.text_bytes // 4) + BASE_INPUT_TOKENS + IMAGE_TOKENS * self.images
