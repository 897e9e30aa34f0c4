"""A Responses API request → an Anthropic Messages request, by Chat Completions' rules.

Shared with ``request``: sampling (``temperature``/``top_p``, 0–1, fitted to the model),
the output ceiling (capped at the model's maximum), ``user``/``safety_identifier`` →
``metadata.user_id`` (never an e-mail address or phone number), JSON mode (``text.format``
``json_object`` / ``json_schema``: native structured output or a forced tool), tool
choice and ``parallel_tool_calls``, prefill rules, stub tools for a history without tools.
Items and tools have their own modules (``responses_items``, ``responses_tools``).

Choices where the contract leaves room:

- ``max_output_tokens`` defaults to ``DEFAULT_MAX_OUTPUT_TOKENS`` (OpenAI sets no ceiling,
  and Codex sends none; Chat Completions' 1024 would cut agents' answers short), capped at
  the model's maximum; the reservation holds this worst case while the call runs.
- Prompt caching as on Chat Completions (``caching``): ``cache_control`` on content parts,
  on function tools and on the request (one breakpoint on the last cacheable block).
- ``reasoning.effort`` turns thinking on as ``reasoning_effort`` does on Chat Completions;
  it stays on for a tool loop only when the last assistant turn opens with the signed
  thinking (a ``reasoning`` item with ``encrypted_content`` sent back), as Anthropic
  requires; otherwise, and whenever thinking is off, thinking blocks are not sent.
  ``reasoning.summary`` decides whether reasoning items carry their summary text.
- Accepted and ignored (no effect on the answer): ``prompt_cache_key``,
  ``prompt_cache_retention``, ``service_tier``, ``client_metadata``, ``context_management``,
  ``text.verbosity`` (a style hint Claude has no setting for; Codex sends it), ``strict``
  on tools, ``truncation`` (nothing is truncated: an overlong input is an upstream 400).
- Rejected when set: ``background``, ``conversation``, ``prompt`` (templates),
  ``max_tool_calls``, ``top_logprobs`` > 0, the ``message.output_text.logprobs`` include.
  Anything else unknown is a 400, as on Chat Completions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.errors import invalid
from proxy.modelspec import ModelSpec

from .caching import Breakpoints
from .fields import opt_bool, opt_number, opt_str, unsupported, wrong_type
from .messages import finish_prefill, history_stub_tools
from .reasoning import Reasoning, parse_effort, thinking_fields, tool_turn_lacks_thinking
from .request import assemble_payload, check_thinking_compatible, end_user, max_tokens_of, sampling
from .responses_items import normalize_input, translate_items, without_thinking
from .responses_tools import ToolNames, translate_tools
from .tools import JSON_MODE_NATIVE, combine_tooling, json_object_mode, json_schema_mode

DEFAULT_MAX_OUTPUT_TOKENS = 32_000
ENCRYPTED_REASONING = "reasoning.encrypted_content"

_HANDLED_FIELDS = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
    "temperature", "top_p", "reasoning", "text", "stream", "stream_options", "store", "previous_response_id",
    "include", "metadata", "user", "safety_identifier", "truncation", "max_tool_calls", "top_logprobs",
    "background", "conversation", "prompt", "cache_control",
})
_IGNORED_FIELDS = frozenset({
    "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "service_tier", "client_metadata",
    "context_management",
})
_KNOWN_FIELDS = _HANDLED_FIELDS | _IGNORED_FIELDS
_REJECTED_WHEN_SET = {
    "conversation": "conversation is not supported by this gateway; continue with previous_response_id.",
    "prompt": "Prompt templates (prompt) are not supported by this gateway; send input and instructions.",
    "max_tool_calls": "max_tool_calls is not supported by this gateway.",
}
_INCLUDABLE = frozenset({
    ENCRYPTED_REASONING, "web_search_call.action.sources", "web_search_call.results", "file_search_call.results",
    "code_interpreter_call.outputs", "computer_call_output.output.image_url", "message.input_image.image_url",
})
_SUMMARIES = frozenset({"auto", "concise", "detailed"})
_VERBOSITIES = frozenset({"low", "medium", "high"})


@dataclass(slots=True)
class ResponsesRequest:
    """A translated request plus what the response side needs (the call plan's context)."""

    payload: dict
    stream: bool
    max_tokens: int
    requested_model: str
    user: str | None
    json_mode: str | None
    names: ToolNames
    ignored_tools: list[str]
    include_encrypted: bool          # reasoning items carry encrypted_content for the client
    summary: bool                    # reasoning items carry their summary text
    store: bool
    previous_response_id: str | None
    input_items: list[dict]          # this request's items, with ids (stored for /input_items)
    settings: dict                   # the request's settings, echoed in the response object
    response: dict | None = field(default=None)  # the full response once rendered (for storage)

    @property
    def json_tool(self) -> str | None:
        return None if self.json_mode in (None, JSON_MODE_NATIVE) else self.json_mode


def translate_responses_request(body: dict, spec: ModelSpec, *, requested_model: str, store_enabled: bool,
                                history: list[dict] | None = None) -> ResponsesRequest:
    """Raises a 400 ``GatewayError`` naming the field for any invalid or unsupported input.
    ``history`` holds the items of the stored conversation ``previous_response_id`` continues."""
    _check_fields(body)
    stream = bool(opt_bool(body, "stream"))
    _stream_options(body, stream)
    store = opt_bool(body, "store") is not False and store_enabled
    include = _include(body.get("include"))
    instructions = opt_str(body, "instructions", 10_000_000)
    input_items = normalize_input(body.get("input"))
    marks = Breakpoints()
    tooling = translate_tools(body, marks)
    pairs = [("previous_response_id", item) for item in history or ()]
    pairs += [(f"input[{i}]", item) for i, item in enumerate(input_items)]
    system, messages = translate_items(pairs, tooling.names, marks)
    if instructions and instructions.strip():
        system.insert(0, {"type": "text", "text": instructions})
    if not messages:
        raise invalid("input must contain at least one user or assistant message.", "input")
    text = _text(body.get("text"))
    json_mode, json_spec = _json_mode(text.get("format"), spec)
    tools, tool_choice, json_mode, output_format = combine_tooling(
        tooling.tools, tooling.tool_choice, opt_bool(body, "parallel_tool_calls"), json_mode, json_spec, "text.format")
    if not tools:
        tools = history_stub_tools(messages)
        if tools:
            tool_choice = {"type": "none"}
    sampling_fields = sampling(body, spec)
    max_tokens, max_field = max_tokens_of(body, spec, ("max_output_tokens",), DEFAULT_MAX_OUTPUT_TOKENS)
    effort, summary = _reasoning(body.get("reasoning"))
    thinking: dict | None = None
    if effort is not None and not tool_turn_lacks_thinking(messages):
        check_thinking_compatible(sampling_fields, tool_choice, json_mode, "reasoning.effort", "text.format")
        # the default output ceiling already has room for thinking: keep it (as if set)
        max_tokens, thinking = thinking_fields(Reasoning(effort=effort, param="reasoning.effort"), spec,
                                               max_tokens, max_field or "max_output_tokens")
    if thinking is None:
        messages = without_thinking(messages)
    finish_prefill(messages, spec, thinking=thinking is not None)
    user = end_user(body)

    payload = assemble_payload(
        spec, max_tokens, messages, system=system, sampling_fields=sampling_fields, tools=tools,
        tool_choice=tool_choice, user=user, output_format=output_format, thinking=thinking, marks=marks,
        cache_control=body.get("cache_control"), stream=stream)
    settings = _settings(body, instructions, text, effort, summary, store)
    return ResponsesRequest(
        payload=payload, stream=stream, max_tokens=max_tokens, requested_model=requested_model, user=user or None,
        json_mode=json_mode, names=tooling.names, ignored_tools=tooling.ignored,
        include_encrypted=ENCRYPTED_REASONING in include, summary=summary is not None, store=store,
        previous_response_id=settings["previous_response_id"], input_items=input_items, settings=settings,
    )


def _check_fields(body: dict) -> None:
    for name in body:
        if name not in _KNOWN_FIELDS:
            raise invalid(f"Unrecognized request argument supplied: {name}", name, code="unknown_parameter")
    for name, message in _REJECTED_WHEN_SET.items():
        if body.get(name) is not None:
            raise unsupported(message, name)
    if opt_bool(body, "background"):
        raise unsupported("background responses are not supported by this gateway; use stream instead.", "background")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not (type(top_logprobs) is int and top_logprobs == 0):
        raise unsupported("top_logprobs is not supported by Claude models.", "top_logprobs")
    truncation = body.get("truncation")
    if truncation not in (None, "auto", "disabled"):
        raise invalid("truncation must be 'auto' or 'disabled'.", "truncation")
    previous = opt_str(body, "previous_response_id", 100)
    if previous is not None and not previous:
        raise invalid("previous_response_id must not be empty.", "previous_response_id")
    _metadata(body.get("metadata"))


def _stream_options(body: dict, stream: bool) -> None:
    options = body.get("stream_options")
    if options is None:
        return
    if not stream:
        raise invalid("stream_options is only allowed when stream is true.", "stream_options")
    if not isinstance(options, dict):
        raise wrong_type("stream_options must be an object.", "stream_options")
    opt_bool(options, "include_obfuscation")  # obfuscation pads deltas against side channels; we send none


def _include(raw: Any) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise wrong_type("include must be an array of strings.", "include")
    for value in raw:
        if value == "message.output_text.logprobs":
            raise unsupported("logprobs are not supported by Claude models.", "include")
        if value not in _INCLUDABLE:
            raise invalid(f"include value {value[:100]!r} is not supported.", "include")
    return frozenset(raw)


def _metadata(raw: Any) -> None:
    """OpenAI's limits: at most 16 pairs, keys up to 64 and values up to 512 characters."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise wrong_type("metadata must be an object of string values.", "metadata")
    if len(raw) > 16:
        raise invalid("metadata holds at most 16 key-value pairs.", "metadata")
    for key, value in raw.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise invalid("metadata keys must be strings of at most 64 characters and values strings of at "
                          "most 512.", "metadata")


def _text(raw: Any) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise wrong_type("text must be an object.", "text")
    verbosity = raw.get("verbosity")
    if verbosity is not None and verbosity not in _VERBOSITIES:
        raise invalid("text.verbosity must be 'low', 'medium' or 'high'.", "text.verbosity")
    return raw


def _json_mode(fmt: Any, spec: ModelSpec) -> tuple[str | None, dict | None]:
    if fmt is None:
        return None, None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None, None
    if kind == "json_object":
        return json_object_mode()
    if kind != "json_schema":
        raise invalid("text.format.type must be 'text', 'json_object' or 'json_schema'.", "text.format.type")
    return json_schema_mode(fmt, spec, "text.format")


def _reasoning(raw: Any) -> tuple[str | None, str | None]:
    """(effort, summary) of ``reasoning``; effort ``none`` is no thinking."""
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise wrong_type("reasoning must be an object.", "reasoning")
    effort = parse_effort(raw.get("effort"), "reasoning.effort")
    summary = raw.get("summary", raw.get("generate_summary"))
    if summary is not None and summary not in _SUMMARIES:
        raise invalid("reasoning.summary must be 'auto', 'concise' or 'detailed'.", "reasoning.summary")
    return effort, summary


def _settings(body: dict, instructions: str | None, text: dict, effort: str | None, summary: str | None,
              store: bool) -> dict:
    """The request's settings as OpenAI echoes them in the response object (defaults filled in)."""
    temperature, top_p = opt_number(body, "temperature"), opt_number(body, "top_p")
    parallel = body.get("parallel_tool_calls")
    return {
        "background": False,
        "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": effort, "summary": summary},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": body.get("service_tier") or "default",
        "store": store,
        "temperature": 1.0 if temperature is None else temperature,
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity") or "medium"},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_logprobs": 0,
        "top_p": 1.0 if top_p is None else top_p,
        "truncation": body.get("truncation") or "disabled",
        "user": body.get("user"),
    }
