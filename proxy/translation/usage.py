"""Token usage: Anthropic's usage object → the four input classes plus output, and OpenAI's shape."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from billing.tokens import TokenCounts


@dataclass(frozen=True, slots=True)
class Usage(TokenCounts):
    """Token counts read from Anthropic's ``usage`` objects (SPEC §5): ``input_tokens`` is
    the uncached input; ``cache_creation`` splits writes by TTL."""

    def merge(self, later: Any) -> Usage:
        """Apply a later (cumulative) usage object, e.g. from ``message_delta``: every field
        it carries supersedes ours, missing or null ones keep ours (§7.1, open question 11)."""
        if not isinstance(later, Mapping):
            return self
        write_5m, write_1h = self._cache_writes(later)
        return Usage(
            input_tokens=_count(later, "input_tokens", self.input_tokens),
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            cache_read=_count(later, "cache_read_input_tokens", self.cache_read),
            output_tokens=_count(later, "output_tokens", self.output_tokens),
        )

    def _cache_writes(self, later: Mapping) -> tuple[int, int]:
        """The TTL split (``cache_creation``) decides 5m vs 1h; a total without a split keeps
        the known 1h part and counts the rest as 5m. The classes never sum to less than the
        reported total, so no written token goes unbilled."""
        total = _count(later, "cache_creation_input_tokens", None)
        split = later.get("cache_creation")
        if isinstance(split, Mapping):
            write_1h = _count(split, "ephemeral_1h_input_tokens", 0)
            write_5m = _count(split, "ephemeral_5m_input_tokens", 0)
            if total is not None:
                write_5m = max(write_5m, total - write_1h)
            return write_5m, write_1h
        if total is None:
            return self.cache_write_5m, self.cache_write_1h
        write_1h = min(self.cache_write_1h, total)
        return total - write_1h, write_1h


def _count(source: Mapping, key: str, default: Any) -> Any:
    value = source.get(key)
    if type(value) is int and value >= 0:
        return value
    return default


def normalize_usage(anthropic_usage: Any) -> Usage:
    """The one canonical normaliser of an Anthropic ``usage`` object (None tolerated)."""
    return Usage().merge(anthropic_usage)


def openai_usage(u: TokenCounts) -> dict:
    """OpenAI usage: ``prompt_tokens`` is all input incl. cache, ``cached_tokens`` the reads,
    ``cache_write_tokens`` the writes of both TTLs (OpenRouter's field); thinking is part of
    ``completion_tokens``, as Anthropic counts it in ``output_tokens``."""
    prompt_tokens = u.prompt_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": u.cache_write_5m
                                  + u.cache_write_1h, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


class StreamMeter:
    """What an upstream (Anthropic) event stream used and how it ended, whatever shape the
    client gets it in: usage (from ``message_start``, superseded by ``message_delta``), the
    stop reason, ``done`` (``message_stop`` seen), ``failed`` (an ``error`` event), and what
    reached the client, which each renderer reports with ``delivered``."""

    __slots__ = ("usage", "usage_final", "stop_reason", "upstream_message_id", "upstream_model", "done", "failed",
                 "error", "delivered_chars", "delivered_events", "max_tokens")

    def __init__(self, max_tokens: int) -> None:
        self.usage = Usage()
        self.usage_final = False
        self.stop_reason: str | None = None
        self.upstream_message_id: str | None = None
        self.upstream_model: str | None = None
        self.done = False
        self.failed = False
        self.error: Any = None  # the data of the upstream `error` event
        self.delivered_chars = 0
        self.delivered_events = 0
        self.max_tokens = max_tokens

    def observe(self, event: str, data: dict) -> None:
        if event == "content_block_delta":
            return  # the hot path: nothing to meter (renderers count what they deliver)
        if event == "message_start":
            message = data.get("message") or {}
            self.upstream_message_id = message.get("id")
            self.upstream_model = message.get("model")
            self.usage = normalize_usage(message.get("usage"))
        elif event == "message_delta":
            stop_reason = (data.get("delta") or {}).get("stop_reason")
            if stop_reason:
                self.stop_reason = stop_reason
            usage = data.get("usage")
            if usage:
                self.usage = self.usage.merge(usage)
                self.usage_final = True
        elif event == "message_stop":
            self.done = True
        elif event == "error":
            self.failed = True
            self.error = data

    @property
    def error_type(self) -> str | None:
        """Anthropic's type of an in-stream ``error`` event."""
        error = self.error.get("error") if isinstance(self.error, dict) else None
        return error.get("type") if isinstance(error, dict) else None

    def delivered(self, text: str) -> None:
        self.delivered_chars += len(text)
        self.delivered_events += 1

    def estimated_output_tokens(self) -> int:
        """Output tokens for billing a stream cut short (client disconnect).

        Exact once a ``message_delta`` carried the cumulative usage. Before that, count from
        what was delivered: the larger of ceil(characters / 4) and the number of content
        deltas (each carries at least one token) — and never less than ``message_start``
        reported, nor more than ``max_tokens`` (the model cannot have produced more).
        What the client never saw is not counted.
        """
        if self.usage_final:
            return self.usage.output_tokens
        by_chars = -(-self.delivered_chars // 4)
        return min(max(by_chars, self.delivered_events, self.usage.output_tokens), self.max_tokens)

    def billed_usage(self, cancelled: bool) -> tuple[Usage, bool]:
        """The usage to record and whether its output is an estimate (a cancelled stream
        is billed for its input and the output delivered)."""
        if not cancelled:
            return self.usage, False
        return self.usage.with_output(self.estimated_output_tokens()), not self.usage_final
