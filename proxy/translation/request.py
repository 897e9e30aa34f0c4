"""OpenAI Chat Completions ⇄ Anthropic Messages: pure, synchronous request/response translation.

Nothing here does I/O, so the hot path calls it inline and the unit tests pin every rule.
The streaming counterpart is ``proxy.translation.streaming``. References: ``docs/SPEC.md``
§3 and §5, ``docs/wire-format.md`` (section numbers below point there).

Every malformed body becomes a 400 ``GatewayError`` naming the field; no ``KeyError``,
``TypeError`` or ``ValueError`` escapes. Choices made where the contract leaves room:

- ``max_completion_tokens`` / ``max_tokens`` above the model's maximum are *capped* to it:
  the field is a ceiling, and a client asking for "up to 100k" wants the most it can get.
- Fields Claude cannot honour are rejected when set to a value that would change the
  answer (``n>1``, ``logprobs``, non-zero penalties, ``logit_bias``, ``audio``, audio
  ``modalities``, ``web_search_options``, ``verbosity``, the deprecated ``functions`` /
  ``function_call`` / ``function`` role). Fields with no effect on the answer are accepted
  and ignored: ``seed`` (OpenAI itself only promises best effort), ``store``, ``metadata``,
  ``service_tier``, ``prompt_cache_key``, ``prompt_cache_retention``, ``prediction`` (a
  latency hint), and ``strict`` on tools (as Anthropic's own compatibility layer does).
  Anything else unknown is a 400 "Unrecognized request argument supplied", as OpenAI does.
- ``json_object`` always uses a forced tool with a permissive object schema, on every model:
  a tool input is always a JSON object, so ``content`` is guaranteed to be valid JSON.
  Native structured output would need a schema (Anthropic requires
  ``additionalProperties: false`` there), which ``json_object`` does not have.
  ``json_schema`` uses native ``output_config.format`` when the model supports it (it then
  combines with user tools), else the same forced tool (which cannot be combined with user
  tools, and needs an object schema — OpenAI requires that too).
- Reasoning: ``reasoning_effort`` (OpenAI) and ``reasoning: {effort, max_tokens, exclude,
  enabled}`` (OpenRouter; ``enabled: true`` alone means effort ``medium``, as there) turn
  thinking on in the form the model table gives the model (``proxy.translation.reasoning``):
  a budget (effort → LiteLLM's budgets, or ``max_tokens`` as is) or adaptive thinking with
  ``output_config.effort``. Both spellings may be sent if they agree; an effort together
  with a budget is a 400 (OpenRouter: one or the other). OpenAI's max includes reasoning, so
  a budget is fitted under it, and with no max the thinking room is added to the default.
  Models without thinking answer 400 naming the field used.
- Thinking comes back as ``reasoning_content`` + ``reasoning_details`` (hidden with
  ``reasoning.exclude``; adaptive models are then asked to omit the text). An assistant
  message's ``reasoning_details`` go upstream as its thinking blocks, first, unchanged.
  Thinking stays on for a turn whose last assistant turn made tool calls when that turn
  carries its thinking; when it does not (a client that drops ``reasoning_details``, e.g.
  plain OpenAI SDK code) thinking is switched off for the request: Anthropic rejects a
  tool-use turn without its thinking while thinking is on, and refusing would break every
  tool loop of such clients. With thinking off, thinking blocks in the history are left out
  (Claude ignores them then, and rejects them in a final assistant message).
- Prompt caching: ``cache_control`` on parts, messages, tools and the request
  (``proxy.translation.caching``); at most 4 breakpoints, 1h before 5m, as 400s naming the
  client's field; whitespace-only text with a breakpoint is a 400 (the block is dropped).
- A history with tool calls but no ``tools`` gets stub tools (Anthropic requires tool
  definitions then) and ``tool_choice: none``, matching the client offering no tools.
- Tool-call ids outside Anthropic's ``^[a-zA-Z0-9_-]+$`` (other providers' ids) are
  rewritten deterministically (cleaned + hash suffix) on both the call and its result.
- A data-URL image's media type is taken from its magic bytes: Anthropic rejects a
  mismatch, and the bytes are the truth. Bytes that are no JPEG/PNG/GIF/WebP are a 400.
- ``user`` (or else ``safety_identifier``) goes to ``metadata.user_id`` unless it looks like
  an e-mail address or a phone number (Anthropic forbids those there); it is always
  returned in ``Translated.user`` for the request log.
- An assistant-first conversation is passed on as is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from proxy.errors import invalid
from proxy.modelspec import ModelSpec

from .caching import Breakpoints
from .fields import DEFAULT_MAX_TOKENS, opt_bool, opt_number, opt_str, unsupported, wrong_type
from .messages import finish_prefill, history_stub_tools, translate_messages
from .reasoning import (
    MIN_BUDGET,
    Reasoning,
    merge_output_config,
    parse_effort,
    strip_thinking,
    thinking_fields,
    tool_turn_lacks_thinking,
)
from .tools import JSON_MODE_NATIVE, JSON_TOOL_NAME, tooling

__all__ = ["DEFAULT_MAX_TOKENS", "Translated", "translate_request"]

# Upper-bound estimator constants (see estimate_input_tokens_upper_bound).

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9 ().-]{7,24}")

_REASONING_KEYS = frozenset({"effort", "max_tokens", "exclude", "enabled"})

_HANDLED_FIELDS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
    "stop", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "user", "safety_identifier", "n", "logprobs", "top_logprobs", "seed",
    "presence_penalty", "frequency_penalty", "logit_bias", "reasoning_effort", "modalities",
    "audio", "functions", "function_call", "web_search_options", "verbosity", "reasoning", "cache_control",
})
_IGNORED_FIELDS = frozenset({
    "store", "metadata", "service_tier", "prompt_cache_key", "prompt_cache_retention", "prediction",
})
_KNOWN_FIELDS = _HANDLED_FIELDS | _IGNORED_FIELDS
_REJECTED_WHEN_SET = {
    "audio": "Audio output is not supported by Claude models.",
    "web_search_options": "web_search_options is not supported by this gateway.",
    "functions": "The deprecated 'functions' parameter is not supported; use 'tools'.",
    "function_call": "The deprecated 'function_call' parameter is not supported; use 'tool_choice'.",
}


@dataclass(slots=True)
class Translated:
    """A translated request plus what the response side needs to translate back."""

    payload: dict
    stream: bool
    include_usage: bool
    json_mode: str | None  # None, JSON_MODE_NATIVE, or the name of the forced JSON tool
    requested_model: str
    max_tokens: int
    user: str | None
    exclude_reasoning: bool = False  # reasoning.exclude: thinking is not returned to the client

    @property
    def json_tool(self) -> str | None:
        """Name of the forced tool emulating JSON mode, whose input becomes ``content``."""
        return None if self.json_mode in (None, JSON_MODE_NATIVE) else self.json_mode


# ---------------------------------------------------------------------------------------
# Request
# ---------------------------------------------------------------------------------------

def translate_request(body: Any, spec: ModelSpec, *, requested_model: str) -> Translated:
    """Translate an OpenAI chat-completions body into an Anthropic Messages request.

    ``max_tokens`` is ``max_completion_tokens`` ?? ``max_tokens`` ?? 1024, capped silently
    at ``spec.max_output_tokens``. Raises a 400 ``GatewayError`` naming the field for any
    invalid or unsupported input.
    """
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", None, code="invalid_type")
    _check_fields(body)
    stream, include_usage = _stream_flags(body)
    marks = Breakpoints()
    system, messages = translate_messages(body.get("messages"), marks)
    tools, tool_choice, json_mode, output_format = tooling(body, spec, marks)
    if not tools:
        tools = history_stub_tools(messages)
        if tools:
            tool_choice = {"type": "none"}
    stop_sequences = _stop_sequences(body.get("stop"))
    sampling_fields = sampling(body, spec)
    max_tokens, max_field = max_tokens_of(body, spec)
    reasoning = _reasoning(body, spec)
    if reasoning is not None and tool_turn_lacks_thinking(messages):
        reasoning = None
    thinking: dict = {}
    if reasoning is not None:
        check_thinking_compatible(sampling_fields, tool_choice, json_mode, reasoning.param)
        max_tokens, thinking = thinking_fields(reasoning, spec, max_tokens, max_field)
    else:
        strip_thinking(messages)
    finish_prefill(messages, spec, thinking=bool(thinking))
    user = end_user(body)

    payload = assemble_payload(
        spec, max_tokens, messages, system=system, stop_sequences=stop_sequences, sampling_fields=sampling_fields,
        tools=tools, tool_choice=tool_choice, user=user, output_format=output_format, thinking=thinking,
        marks=marks, cache_control=body.get("cache_control"), stream=stream)
    return Translated(
        payload=payload,
        stream=stream,
        include_usage=include_usage,
        json_mode=json_mode,
        requested_model=requested_model,
        max_tokens=max_tokens,
        user=user or None,
        exclude_reasoning=bool(reasoning and reasoning.exclude),
    )


def assemble_payload(spec: ModelSpec, max_tokens: int, messages: list[dict], *, system: list[dict] | None,
                     stop_sequences: list[str] | None = None, sampling_fields: dict, tools: list[dict],
                     tool_choice: dict | None, user: str | None, output_format: dict | None, thinking: dict | None,
                     marks: Breakpoints, cache_control: Any, stream: bool) -> dict[str, Any]:
    """The Anthropic request from translated parts (every OpenAI front door ends here)."""
    payload: dict[str, Any] = {"model": spec.upstream_id, "max_tokens": max_tokens, "messages": messages}
    if system:
        payload["system"] = system
    if stop_sequences:
        payload["stop_sequences"] = stop_sequences
    payload.update(sampling_fields)
    if tools:
        payload["tools"] = tools
    if tool_choice:
        payload["tool_choice"] = tool_choice
    if user and not looks_like_pii(user):
        payload["metadata"] = {"user_id": user}
    if output_format:
        payload["output_config"] = {"format": output_format}
    if thinking:
        merge_output_config(payload, thinking)
    marks.mark_last(payload, cache_control)
    marks.check()
    payload["stream"] = stream
    return payload


# --- sampling, limits, thinking ------------------------------------------------------------

def _stream_flags(body: dict) -> tuple[bool, bool]:
    stream = bool(opt_bool(body, "stream"))
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise invalid("stream_options is only allowed when stream is true.", "stream_options")
    if not isinstance(options, dict):
        raise wrong_type("stream_options must be an object.", "stream_options")
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise wrong_type("stream_options.include_usage must be a boolean.", "stream_options.include_usage")
    return stream, bool(include_usage)

def _check_fields(body: dict) -> None:
    """Reject unknown fields and fields whose non-default value Claude cannot honour."""
    for name in body:
        if name not in _KNOWN_FIELDS:
            raise invalid(f"Unrecognized request argument supplied: {name}", name, code="unknown_parameter")
    n = body.get("n")
    if n is not None:
        if type(n) is not int or n < 1:
            raise wrong_type("n must be a positive integer.", "n")
        if n > 1:
            raise unsupported("n>1 is not supported: Claude returns one choice per request; "
                               "send separate requests instead.", "n")
    if opt_bool(body, "logprobs"):
        raise unsupported("logprobs is not supported by Claude models.", "logprobs")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not (type(top_logprobs) is int and top_logprobs == 0):
        raise unsupported("top_logprobs is not supported by Claude models.", "top_logprobs")
    for name in ("presence_penalty", "frequency_penalty"):
        if opt_number(body, name) not in (None, 0):
            raise unsupported(f"{name} is not supported by Claude models; omit it or set it to 0.", name)
    logit_bias = body.get("logit_bias")
    if logit_bias is not None:
        if not isinstance(logit_bias, dict):
            raise wrong_type("logit_bias must be an object.", "logit_bias")
        if logit_bias:
            raise unsupported("logit_bias is not supported by Claude models.", "logit_bias")
    seed = body.get("seed")
    if seed is not None and type(seed) is not int:
        raise wrong_type("seed must be an integer.", "seed")
    modalities = body.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list):
            raise wrong_type("modalities must be an array of strings.", "modalities")
        if any(m != "text" for m in modalities):
            raise unsupported("Only the 'text' modality is supported by Claude models.", "modalities")
    for name, message in _REJECTED_WHEN_SET.items():
        if body.get(name) is not None:
            raise unsupported(message, name)
    if body.get("verbosity") not in (None, "medium"):
        raise unsupported("verbosity is not supported by Claude models.", "verbosity")


def _stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise wrong_type("stop must be a string or an array of strings.", "stop")
    if len(sequences) > 4:
        raise invalid("stop accepts at most 4 sequences.", "stop")
    if not all(s.strip() for s in sequences):
        raise invalid("stop sequences must contain non-whitespace characters (Claude rejects "
                      "whitespace-only stop sequences).", "stop")
    return sequences or None


def sampling(body: dict, spec: ModelSpec) -> dict:
    """temperature/top_p/top_k as the model accepts them (§5.4): 0–1 only; defaults dropped
    where sampling is fixed; a no-op top_p=1 dropped next to temperature."""
    temperature = opt_number(body, "temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise invalid(f"temperature must be between 0 and 1 for Claude models (got {temperature}).",
                      "temperature")
    top_p = opt_number(body, "top_p")
    if top_p is not None and not 0 <= top_p <= 1:
        raise invalid(f"top_p must be between 0 and 1 (got {top_p}).", "top_p")
    top_k = body.get("top_k")
    if top_k is not None and (type(top_k) is not int or top_k < 0):
        raise wrong_type("top_k must be a non-negative integer.", "top_k")
    if not spec.accepts_sampling:
        for name, value in (("temperature", temperature), ("top_p", top_p)):
            if value is not None and value != 1:
                raise unsupported(f"{name} cannot be changed for this model; omit it.", name)
        if top_k is not None:
            raise unsupported("top_k cannot be set for this model; omit it.", "top_k")
        return {}
    if temperature is not None and top_p is not None:
        if top_p == 1:
            top_p = None
        elif not spec.accepts_temperature_with_top_p:
            raise invalid("temperature and top_p cannot both be set for this model; set only one.", "top_p")
    values = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
    return {name: value for name, value in values.items() if value is not None}


def max_tokens_of(body: dict, spec: ModelSpec, fields: tuple[str, ...] = ("max_completion_tokens", "max_tokens"),
                  default: int = DEFAULT_MAX_TOKENS) -> tuple[int, str | None]:
    """Returns (effective max_tokens, name of the field that set it or None for default): the
    first of ``fields`` that is set, else ``default``; capped at the model's maximum."""
    chosen: tuple[int, str] | None = None
    for name in fields:
        value = body.get(name)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise invalid(f"{name} must be a positive integer.", name)
        chosen = chosen or (value, name)
    if chosen is None:
        return min(default, spec.max_output_tokens), None
    return min(chosen[0], spec.max_output_tokens), chosen[1]


def _reasoning(body: dict, spec: ModelSpec) -> Reasoning | None:
    """``reasoning_effort`` and OpenRouter's ``reasoning`` object → what the client asked for
    (None: thinking off)."""
    top = body.get("reasoning_effort")
    effort = parse_effort(top, "reasoning_effort")
    raw = body.get("reasoning")
    if raw is None:
        return _reasoning_for(spec, Reasoning(effort=effort)) if effort else None
    if not isinstance(raw, dict):
        raise wrong_type("reasoning must be an object.", "reasoning")
    for key in raw:
        if key not in _REASONING_KEYS:
            name = f"reasoning.{str(key)[:32]}"
            raise invalid(f"Unrecognized argument {name}: reasoning takes effort, max_tokens, exclude and "
                          "enabled.", name, code="unknown_parameter")
    nested = parse_effort(raw.get("effort"), "reasoning.effort")
    if top is not None and raw.get("effort") is not None and nested != effort:
        raise invalid("reasoning.effort and reasoning_effort disagree; set one of them.", "reasoning.effort")
    effort = effort or nested
    budget = raw.get("max_tokens")
    if budget is not None:
        if type(budget) is not int or budget < MIN_BUDGET:
            raise invalid(f"reasoning.max_tokens must be an integer of at least {MIN_BUDGET} (Claude's "
                          "smallest thinking budget).", "reasoning.max_tokens")
        if effort is not None:
            raise invalid("Set either an effort or reasoning.max_tokens, not both.", "reasoning.max_tokens")
    for name in ("exclude", "enabled"):
        if raw.get(name) is not None and not isinstance(raw[name], bool):
            raise wrong_type(f"reasoning.{name} must be a boolean.", f"reasoning.{name}")
    switched_off = raw.get("enabled") is False or "none" in (top, raw.get("effort"))
    wanted = effort is not None or budget is not None or raw.get("enabled") is True
    if switched_off:
        if wanted:
            raise invalid("reasoning is both switched off and configured; send one or the other.", "reasoning")
        return None
    if not wanted:
        return None
    param = "reasoning_effort" if top is not None else "reasoning"
    return _reasoning_for(spec, Reasoning(effort=effort, budget=budget, exclude=raw.get("exclude") is True,
                                          param=param))


def _reasoning_for(spec: ModelSpec, reasoning: Reasoning) -> Reasoning:
    if not spec.thinking:
        raise unsupported(f"{reasoning.param} is not supported by this model (it has no extended thinking).",
                          reasoning.param)
    return reasoning


def check_thinking_compatible(sampling: dict, tool_choice: dict | None, json_mode: str | None,
                              param: str, format_field: str = "response_format") -> None:
    """Extended thinking forbids changed temperature/top_k, top_p < 0.95 and forced tools (§5.4)."""
    temperature = sampling.pop("temperature", None)
    if temperature is not None and temperature != 1:
        raise invalid(f"temperature cannot be changed together with {param} on Claude models.", "temperature")
    if "top_k" in sampling:
        raise invalid(f"top_k cannot be set together with {param}.", "top_k")
    if sampling.get("top_p", 1) < 0.95:
        raise invalid(f"top_p must be between 0.95 and 1 together with {param}.", "top_p")
    if tool_choice and tool_choice["type"] in ("any", "tool"):
        if json_mode == JSON_TOOL_NAME:
            raise invalid(f"{format_field} cannot be combined with {param} on this model.", format_field)
        raise invalid(f"tool_choice must be 'auto' or 'none' together with {param}.", "tool_choice")


def end_user(body: dict) -> str | None:
    user = opt_str(body, "user", 256)
    safety_identifier = opt_str(body, "safety_identifier", 256)
    return user if user is not None else safety_identifier


def looks_like_pii(value: str) -> bool:
    """Anthropic's metadata.user_id must not carry an e-mail address or phone number; when
    in doubt leave it out (it only serves abuse tracking)."""
    if _EMAIL.search(value):
        return True
    return bool(_PHONE.fullmatch(value)) and 7 <= sum(c.isdigit() for c in value) <= 15
