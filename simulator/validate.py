"""Request validation: the top-level fields of a Messages (or count_tokens) request and the
cross-field rules of thinking and prompt caching, with the real API's 400 messages."""
from __future__ import annotations

from dataclasses import dataclass

from . import models
from .caching import Breakpoint, check_breakpoints, parse_cache_control
from .content import Scan
from .errors import bad

# The request fields of the SDK's MessageCreateParams (stable and beta); anything else is
# "Extra inputs are not permitted".
MESSAGES_FIELDS = frozenset({
    "model", "max_tokens", "messages", "cache_control", "container", "context_management", "diagnostics",
    "fallback_credit_token", "fallbacks", "inference_geo", "mcp_servers", "metadata", "output_config",
    "output_format", "service_tier", "speed", "stop_sequences", "stream", "system", "temperature", "thinking",
    "tool_choice", "tools", "top_k", "top_p",
})
COUNT_TOKENS_FIELDS = frozenset({
    "model", "messages", "cache_control", "context_management", "mcp_servers", "output_config", "output_format",
    "speed", "system", "thinking", "tool_choice", "tools",
})
EFFORTS = ("low", "medium", "high", "xhigh", "max")
TOOL_CHOICES = ("auto", "any", "tool", "none")
_THINKING_KEYS = {"enabled": ("type", "budget_tokens", "display"), "adaptive": ("type", "display"), "disabled": ("type",)}
MIN_THINKING_BUDGET = 1024
_DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_CONSIDERATIONS = f"{_DOCS}#important-considerations-when-using-extended-thinking"


@dataclass(slots=True)
class Thinking:
    """Thinking switched on for this request."""

    type: str  # "enabled" or "adaptive"
    budget_tokens: int | None
    display: str  # "summarized" or "omitted"
    effort: str | None  # output_config.effort


@dataclass(slots=True)
class Request:
    """A valid request, and what the pass over it learned."""

    body: dict
    model: str
    max_tokens: int | None  # None for count_tokens
    thinking: Thinking | None
    scan: Scan

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True


def validate(req: object, *, count_tokens: bool = False, cache_scope: bool = False, cacheable: bool = True) -> Request:
    """Check a request like the real API (first problem wins) and scan its prompt.
    ``cacheable=False`` (the raw body never says "cache_control") skips the cache bookkeeping."""
    if not isinstance(req, dict):
        raise bad("Input should be a valid dictionary")
    model = req.get("model")
    if model is None:
        raise bad("model: Field required")
    if not isinstance(model, str):
        raise bad("model: Input should be a valid string")
    max_tokens = None if count_tokens else _max_tokens(req.get("max_tokens"))
    messages = req.get("messages")
    if messages is None:
        raise bad("messages: Field required")
    if not isinstance(messages, list):
        raise bad("messages: Input should be a valid list")
    if not messages:
        raise bad("messages: at least one message is required")
    allowed = COUNT_TOKENS_FIELDS if count_tokens else MESSAGES_FIELDS
    if not allowed.issuperset(req):
        extra = next(key for key in req if key not in allowed)
        raise bad(f"{extra}: Extra inputs are not permitted")
    if "temperature" in req or "top_p" in req or "top_k" in req:
        _sampling(req)
    if "stream" in req and not isinstance(req["stream"], bool):
        raise bad("stream: Input should be a valid boolean")
    tools = req.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad("tools: Input should be a valid list")
    if "tool_choice" in req:
        _tool_choice(req["tool_choice"])
    thinking = _thinking(req, model, max_tokens)
    if thinking is not None:
        _check_thinking_compatible(req)
    scan = Scan(allow_cache_scope=cache_scope, track_units=cacheable)
    if tools:
        scan.tools(tools)
    scan.system(req.get("system"))
    last = len(messages) - 1
    for index, message in enumerate(messages):
        scan.message(message, index, index == last)
    if thinking is not None or messages[-1].get("role") == "assistant":
        _check_thinking_blocks(messages, thinking is not None)
    if "cache_control" in req:
        _automatic_breakpoint(req, scan)
    if scan.breakpoints:
        check_breakpoints(scan.breakpoints)
    return Request(req, model, max_tokens, thinking, scan)


def _max_tokens(value: object) -> int:
    if value is None:
        raise bad("max_tokens: Field required")
    if type(value) is not int:
        raise bad("max_tokens: Input should be a valid integer")
    if value < 1:
        raise bad("max_tokens: Input should be greater than or equal to 1")
    return value


def _number(req: dict, name: str, low: float, high: float | None) -> None:
    value = req.get(name)
    if value is None:
        return
    if type(value) not in (int, float):
        raise bad(f"{name}: Input should be a valid number")
    if high is not None and value > high:
        raise bad(f"{name}: Input should be less than or equal to {high}")
    if value < low:
        raise bad(f"{name}: Input should be greater than or equal to {low}")


def _sampling(req: dict) -> None:
    _number(req, "temperature", 0, 1)
    _number(req, "top_p", 0, 1)
    top_k = req.get("top_k")
    if top_k is not None and type(top_k) is not int:
        raise bad("top_k: Input should be a valid integer")
    _number(req, "top_k", 0, None)


def _tool_choice(choice: object) -> None:
    if not isinstance(choice, dict):
        raise bad("tool_choice: Input should be a valid dictionary or object to extract fields from")
    kind = choice.get("type")
    if kind is None:
        raise bad("tool_choice: Unable to extract tag using discriminator 'type'")
    if kind not in TOOL_CHOICES:
        raise bad(f"tool_choice: Input tag {kind!r} found using 'type' does not match any of the expected tags: "
                  "'auto', 'any', 'tool', 'none'")
    if kind == "tool" and not isinstance(choice.get("name"), str):
        raise bad("tool_choice.tool.name: Field required")


def _thinking(req: dict, model: str, max_tokens: int | None) -> Thinking | None:
    if "thinking" not in req and "output_config" not in req:
        return None
    config = req.get("thinking")
    effort = _effort(req.get("output_config"))
    if config is None:
        return None
    if not isinstance(config, dict):
        raise bad("thinking: Input should be a valid dictionary")
    kind = config.get("type")
    if kind is None:
        raise bad("thinking: Unable to extract tag using discriminator 'type'")
    if kind not in ("enabled", "disabled", "adaptive"):
        raise bad(f"thinking: Input tag {kind!r} found using 'type' does not match any of the expected tags: "
                  "'enabled', 'disabled', 'adaptive'")
    for key in config:
        if key not in _THINKING_KEYS[kind]:
            raise bad(f"thinking.{kind}.{key}: Extra inputs are not permitted")
    if kind == "disabled":
        return None
    display = config.get("display") or "summarized"
    if display not in ("summarized", "omitted"):
        raise bad(f"thinking.{kind}.display: Input should be 'summarized' or 'omitted'")
    budget = None
    if kind == "enabled":
        budget = config.get("budget_tokens")
        if budget is None:
            raise bad("thinking.enabled.budget_tokens: Field required")
        if type(budget) is not int:
            raise bad("thinking.enabled.budget_tokens: Input should be a valid integer")
        if budget < MIN_THINKING_BUDGET:
            raise bad(f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}")
        if not models.accepts_thinking(model, "enabled"):
            raise bad('"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and '
                      '"output_config.effort" to control thinking behavior.')
        if max_tokens is not None and budget >= max_tokens:
            raise bad(f"`max_tokens` must be greater than `thinking.budget_tokens`. {_DOCS}"
                      "#max-tokens-and-context-window-size")
    elif not models.accepts_thinking(model, "adaptive"):
        raise bad("adaptive thinking is not supported on this model")
    return Thinking(kind, budget, display, effort)


def _effort(output_config: object) -> str | None:
    if output_config is None:
        return None
    if not isinstance(output_config, dict):
        raise bad("output_config: Input should be a valid dictionary")
    effort = output_config.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise bad("output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    return effort


def _check_thinking_compatible(req: dict) -> None:
    """"Thinking isn't compatible with temperature or top_k modifications as well as forced tool use"."""
    temperature = req.get("temperature")
    if temperature is not None and temperature != 1:
        raise bad(f"`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. {_CONSIDERATIONS}")
    if req.get("top_k") is not None:
        raise bad(f"`top_k` must be unset when thinking is enabled. {_CONSIDERATIONS}")
    top_p = req.get("top_p")
    if top_p is not None and top_p < 0.95:
        raise bad(f"`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. {_CONSIDERATIONS}")
    choice = req.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise bad("Thinking may not be enabled when tool_choice forces tool use.")


def _check_thinking_blocks(messages: list, thinking: bool) -> None:
    """With thinking on, the last assistant turn that used tools must start with its
    thinking; with thinking off, a final assistant message may not contain thinking."""
    final = len(messages) - 1
    for index in range(final, -1, -1):
        message = messages[index]
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        kinds = [block.get("type") for block in blocks]
        if thinking and "tool_use" in kinds and kinds[0] not in ("thinking", "redacted_thinking"):
            raise bad(
                f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                f"`{kinds[0]}`. When `thinking` is enabled, a final `assistant` message must start with a thinking "
                "block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
                f"thinking blocks from previous turns. To avoid this requirement, disable `thinking`. {_DOCS}"
            )
        if not thinking and index == final:
            for j, kind in enumerate(kinds):
                if kind in ("thinking", "redacted_thinking"):
                    raise bad(f"messages.{index}.content.{j}: When thinking is disabled, an `assistant` message in "
                              f"the final position cannot contain `{kind}`. To use thinking blocks, enable `thinking` "
                              "in your request.")
        return


def _automatic_breakpoint(req: dict, scan: Scan) -> None:
    """A top-level ``cache_control`` marks the last cacheable block."""
    ttl = parse_cache_control(req.get("cache_control"), "cache_control", allow_scope=scan.allow_cache_scope)
    if ttl is None:
        return
    kinds = ("thinking", "redacted_thinking")
    for index in range(len(scan.units) - 1, -1, -1):
        block = scan.units[index].block
        if not (isinstance(block, dict) and block.get("type") in kinds):
            scan.breakpoints.append(Breakpoint(index, ttl, "cache_control"))
            return
