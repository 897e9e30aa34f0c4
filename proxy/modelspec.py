"""What the translator needs to know about one model, as a plain immutable value.

Built from the model table (billing.models.Model) and cached per process, so the hot
path never touches the ORM to learn a model's capabilities.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelSpec:
    public_id: str                # canonical id clients use, e.g. "claude-sonnet-4-6"
    upstream_id: str              # id sent to Anthropic, e.g. "claude-sonnet-4-20250514"
    context_window: int = 200_000
    max_output_tokens: int = 64_000
    # Sampling: Opus 4.7 rejects any non-default temperature/top_p/top_k.
    accepts_sampling: bool = True
    # Recent models reject temperature and top_p in the same request.
    accepts_temperature_with_top_p: bool = False
    # Native structured output (output_config.format json_schema); else a forced tool.
    structured_output: bool = False
    # A trailing assistant message (prefill) is accepted.
    prefill: bool = True
    # How the model takes extended thinking (billing.models.Model.ThinkingMode):
    # "enabled" ({type: enabled, budget_tokens}), "adaptive" ({type: adaptive} with
    # output_config.effort; Opus 4.7 takes nothing else) or "none".
    thinking_mode: str = "none"

    @property
    def thinking(self) -> bool:
        return self.thinking_mode != "none"
