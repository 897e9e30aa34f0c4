"""The models ``GET /v1/models`` lists, and which thinking forms a model accepts.

Thinking follows Anthropic's model pages (docs/wire-format.md §5.4 and §10): Opus 4.7
and later take only ``{"type": "adaptive"}``; Opus 4.6 and Sonnet 4.6 take both forms;
older models only ``{"type": "enabled", "budget_tokens"}``. Ids the simulator does not
know accept both, since it answers any model id.
"""
from __future__ import annotations

# id, display name, released, context window, max output (newest first, like the real list)
MODELS: list[tuple[str, str, str, int, int]] = [
    ("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z", 1_000_000, 128_000),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z", 1_000_000, 128_000),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z", 1_000_000, 128_000),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z", 200_000, 64_000),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z", 200_000, 64_000),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z", 200_000, 64_000),
]
ALIASES = {
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
}
_ADAPTIVE_ONLY = ("claude-opus-4-7", "claude-opus-4-8", "claude-opus-5", "claude-sonnet-5", "claude-haiku-5",
                  "claude-fable")
_BUDGET_ONLY = ("claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "claude-opus-4-0",
                "claude-sonnet-4-0", "claude-opus-4-2025", "claude-sonnet-4-2025", "claude-3-7-sonnet")


def info(model_id: str) -> dict | None:
    """A model object of the list, by id or alias."""
    model_id = ALIASES.get(model_id, model_id)
    for row in MODELS:
        if row[0] == model_id:
            return _object(row)
    return None


def _object(row: tuple[str, str, str, int, int]) -> dict:
    model_id, display_name, created_at, context, max_output = row
    return {"type": "model", "id": model_id, "display_name": display_name, "created_at": created_at,
            "max_input_tokens": context, "max_tokens": max_output}


def page(limit: int, after_id: str | None, before_id: str | None) -> dict:
    """One page of the list, paginated by id like the real API."""
    ids = [row[0] for row in MODELS]
    start, end = 0, len(MODELS)
    if after_id in ids:
        start = ids.index(after_id) + 1
    if before_id in ids:
        end = ids.index(before_id)
        start = max(start, end - limit) if after_id is None else start
    rows = MODELS[start:end][:limit]
    data = [_object(row) for row in rows]
    return {
        "data": data,
        "has_more": start + len(rows) < end if before_id is None else start > 0,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def accepts_thinking(model: str, kind: str) -> bool:
    """Whether ``model`` takes ``thinking.type`` ``enabled`` or ``adaptive``."""
    if model.startswith(_ADAPTIVE_ONLY):
        return kind == "adaptive"
    if model.startswith(_BUDGET_ONLY):
        return kind == "enabled"
    return True  # Opus 4.6 and Sonnet 4.6, and ids the simulator does not know
