"""The ``anthropic-beta`` header. By default every value is accepted; with the
``strict_betas`` marker or ``SIM_STRICT_BETAS=1`` an unknown value gets the real API's
400, so tests can reproduce the commonest Claude Code breakage behind gateways.

Known values: the official SDK's list, what Claude Code sends, and ``SIM_EXTRA_BETAS``
(comma list).
"""
from __future__ import annotations

import os

from .errors import bad

KNOWN_BETAS = frozenset({
    # anthropic-sdk-python's AnthropicBetaParam (v0.125)
    "message-batches-2024-09-24", "prompt-caching-2024-07-31", "computer-use-2024-10-22", "computer-use-2025-01-24",
    "pdfs-2024-09-25", "token-counting-2024-11-01", "token-efficient-tools-2025-02-19", "output-128k-2025-02-19",
    "files-api-2025-04-14", "mcp-client-2025-04-04", "mcp-client-2025-11-20", "dev-full-thinking-2025-05-14",
    "interleaved-thinking-2025-05-14", "code-execution-2025-05-22", "extended-cache-ttl-2025-04-11",
    "context-1m-2025-08-07", "context-management-2025-06-27", "model-context-window-exceeded-2025-08-26",
    "skills-2025-10-02", "fast-mode-2026-02-01", "output-300k-2026-03-24", "user-profiles-2026-03-24",
    "user-profiles-2026-08-18", "advisor-tool-2026-03-01", "managed-agents-2026-04-01", "cache-diagnosis-2026-04-07",
    "dreaming-2026-04-21", "thinking-token-count-2026-05-13", "server-side-fallback-2026-06-01",
    "server-side-fallback-2026-07-01", "fallback-credit-2026-06-01", "fallback-credit-2026-07-01",
    "agent-memory-2026-07-22", "mid-conversation-tool-changes-2026-07-01",
    # sent by Claude Code (reference notes; all of 2.1.332's are here) and other clients
    "claude-code-20250219", "fine-grained-tool-streaming-2025-05-14", "prompt-caching-scope-2026-01-05",
    "advanced-tool-use-2025-11-20", "structured-outputs-2025-11-13", "effort-2025-11-24", "oauth-2025-04-20",
    "web-fetch-2025-09-10", "search-results-2025-06-09",
    *(value.strip() for value in os.environ.get("SIM_EXTRA_BETAS", "").split(",") if value.strip()),
})
STRICT_BY_DEFAULT = os.environ.get("SIM_STRICT_BETAS", "") in ("1", "true")


def parse(header: str | None) -> list[str]:
    """The values of an ``anthropic-beta`` header (comma-separated)."""
    return [value.strip() for value in (header or "").split(",") if value.strip()]


def allows_cache_scope(values: list[str]) -> bool:
    """``cache_control.scope`` exists only with the prompt-caching-scope beta."""
    return any(value.startswith("prompt-caching-scope-") for value in values)


def check(values: list[str], strict: bool) -> None:
    unknown = [value for value in values if value not in KNOWN_BETAS]
    if strict and unknown:
        listed = ", ".join(f"`{value}`" for value in unknown)
        raise bad(f"Unexpected value(s) {listed} for the `anthropic-beta` header. Please consult our documentation "
                  "at docs.anthropic.com or try again without the header.")
