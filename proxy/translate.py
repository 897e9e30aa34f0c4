"""OpenAI Chat Completions ⇄ Anthropic Messages: pure, synchronous request/response translation.

Nothing here does I/O, so the hot path calls it inline and the unit tests pin every rule.
The streaming counterpart is ``proxy.streaming``. References: SPEC §3 and §5,
``reference/wire-format.md`` (section numbers below point there).

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
- ``reasoning_effort`` maps to ``thinking: {type: enabled, budget_tokens}`` on models whose
  spec says ``thinking``; elsewhere any value but ``none`` is a 400. OpenAI's max includes
  reasoning, so the budget is fitted under it. Thinking is dropped when the last assistant
  turn holds tool calls: OpenAI clients cannot send the signed thinking blocks back, and
  Anthropic rejects such a turn with thinking on. Thinking output is not returned.
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

import base64
import binascii
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.errors import GatewayError, invalid
from proxy.modelspec import ModelSpec

DEFAULT_MAX_TOKENS = 1024
JSON_MODE_NATIVE = "native"
JSON_TOOL_NAME = "json_response"
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # Anthropic's per-image limit (§5.5)

# Upper-bound estimator constants (see estimate_input_tokens_upper_bound).
IMAGE_TOKENS_BOUND = 6_000
_REQUEST_OVERHEAD_TOKENS = 64
_BLOCK_OVERHEAD_TOKENS = 8
_TOOLS_OVERHEAD_TOKENS = 1_024

_MAX_IMAGE_B64_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_TOOL_ID_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9 ().-]{7,24}")

_ANY_OBJECT_SCHEMA = {"type": "object", "additionalProperties": True}
_EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
_MIN_THINKING_BUDGET = 1024
_TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}

_SYSTEM_PARTS = frozenset({"text"})
_USER_PARTS = frozenset({"text", "image_url"})
_ASSISTANT_PARTS = frozenset({"text", "refusal"})
_TOOL_PARTS = frozenset({"text", "image_url"})
_UNSUPPORTED_PARTS = {
    "input_audio": "Audio input (input_audio content parts) is not supported by Claude models.",
    "file": "file content parts are not supported by this gateway; send images as image_url parts.",
}

_HANDLED_FIELDS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
    "stop", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "user", "safety_identifier", "n", "logprobs", "top_logprobs", "seed",
    "presence_penalty", "frequency_penalty", "logit_bias", "reasoning_effort", "modalities",
    "audio", "functions", "function_call", "web_search_options", "verbosity",
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

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
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
    system, messages = _messages(body.get("messages"))
    tools, tool_choice, json_mode, output_format = _tooling(body, spec)
    if not tools:
        tools = _history_stub_tools(messages)
        if tools:
            tool_choice = {"type": "none"}
    stop_sequences = _stop_sequences(body.get("stop"))
    sampling = _sampling(body, spec)
    max_tokens, max_field = _max_tokens(body, spec)
    budget = _thinking_budget(body.get("reasoning_effort"), spec)
    if budget is not None and _last_assistant_calls_tools(messages):
        budget = None
    if budget is not None:
        _check_thinking_compatible(sampling, tool_choice, json_mode)
        max_tokens, budget = _fit_thinking(budget, max_tokens, max_field, spec)
    _finish_prefill(messages, spec, thinking=budget is not None)
    user = _end_user(body)

    payload: dict[str, Any] = {"model": spec.upstream_id, "max_tokens": max_tokens, "messages": messages}
    if system:
        payload["system"] = system
    if stop_sequences:
        payload["stop_sequences"] = stop_sequences
    payload.update(sampling)
    if tools:
        payload["tools"] = tools
    if tool_choice:
        payload["tool_choice"] = tool_choice
    if user and not _looks_like_pii(user):
        payload["metadata"] = {"user_id": user}
    if budget is not None:
        payload["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if output_format:
        payload["output_config"] = {"format": output_format}
    payload["stream"] = stream
    return Translated(
        payload=payload,
        stream=stream,
        include_usage=include_usage,
        json_mode=json_mode,
        requested_model=requested_model,
        max_tokens=max_tokens,
        user=user or None,
    )


def _unsupported(message: str, param: str) -> GatewayError:
    return invalid(message, param, code="unsupported_parameter")


def _wrong_type(message: str, param: str) -> GatewayError:
    return invalid(message, param, code="invalid_type")


def _check_fields(body: dict) -> None:
    """Reject unknown fields and fields whose non-default value Claude cannot honour."""
    for name in body:
        if name not in _KNOWN_FIELDS:
            raise invalid(f"Unrecognized request argument supplied: {name}", name, code="unknown_parameter")
    n = body.get("n")
    if n is not None:
        if type(n) is not int or n < 1:
            raise _wrong_type("n must be a positive integer.", "n")
        if n > 1:
            raise _unsupported("n>1 is not supported: Claude returns one choice per request; "
                               "send separate requests instead.", "n")
    if _opt_bool(body, "logprobs"):
        raise _unsupported("logprobs is not supported by Claude models.", "logprobs")
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not (type(top_logprobs) is int and top_logprobs == 0):
        raise _unsupported("top_logprobs is not supported by Claude models.", "top_logprobs")
    for name in ("presence_penalty", "frequency_penalty"):
        if _opt_number(body, name) not in (None, 0):
            raise _unsupported(f"{name} is not supported by Claude models; omit it or set it to 0.", name)
    logit_bias = body.get("logit_bias")
    if logit_bias is not None:
        if not isinstance(logit_bias, dict):
            raise _wrong_type("logit_bias must be an object.", "logit_bias")
        if logit_bias:
            raise _unsupported("logit_bias is not supported by Claude models.", "logit_bias")
    seed = body.get("seed")
    if seed is not None and type(seed) is not int:
        raise _wrong_type("seed must be an integer.", "seed")
    modalities = body.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list):
            raise _wrong_type("modalities must be an array of strings.", "modalities")
        if any(m != "text" for m in modalities):
            raise _unsupported("Only the 'text' modality is supported by Claude models.", "modalities")
    for name, message in _REJECTED_WHEN_SET.items():
        if body.get(name) is not None:
            raise _unsupported(message, name)
    if body.get("verbosity") not in (None, "medium"):
        raise _unsupported("verbosity is not supported by Claude models.", "verbosity")


def _opt_bool(body: dict, name: str) -> bool | None:
    value = body.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise _wrong_type(f"{name} must be a boolean.", name)


def _opt_number(body: dict, name: str) -> int | float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _wrong_type(f"{name} must be a number.", name)
    return value


def _opt_str(body: dict, name: str, max_len: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong_type(f"{name} must be a string.", name)
    if len(value) > max_len:
        raise invalid(f"{name} must be at most {max_len} characters.", name)
    return value


def _stream_flags(body: dict) -> tuple[bool, bool]:
    stream = bool(_opt_bool(body, "stream"))
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise invalid("stream_options is only allowed when stream is true.", "stream_options")
    if not isinstance(options, dict):
        raise _wrong_type("stream_options must be an object.", "stream_options")
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise _wrong_type("stream_options.include_usage must be a boolean.", "stream_options.include_usage")
    return stream, bool(include_usage)


# --- messages ------------------------------------------------------------------------------

def _messages(raw: Any) -> tuple[list[dict], list[dict]]:
    """Hoist system/developer messages, translate the rest and merge same-role turns.

    A user turn keeps its ``tool_result`` blocks first (Anthropic's rule, §5.4), so
    ``tool`` and ``user`` messages in a row become one user turn: results, then the rest.
    """
    if not isinstance(raw, list) or not raw:
        raise invalid("messages must be a non-empty array.", "messages")
    system: list[dict] = []
    turns: list[tuple[str, list[dict], list[dict]]] = []  # (role, tool_results, other blocks)
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _wrong_type(f"{where} must be an object.", where)
        role = message.get("role")
        results: list[dict] = []
        if role in ("system", "developer"):
            system.extend(_content_blocks(message.get("content"), f"{where}.content", _SYSTEM_PARTS))
            continue
        if role == "user":
            blocks = _content_blocks(message.get("content"), f"{where}.content", _USER_PARTS)
            if not blocks:
                raise invalid(f"{where}.content must be non-empty.", f"{where}.content")
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
            if not blocks:
                continue
        elif role == "tool":
            results, blocks = [_tool_result_block(message, where)], []
        elif role == "function":
            raise _unsupported("The deprecated 'function' role is not supported; send tool results "
                               "as role 'tool' with a tool_call_id.", f"{where}.role")
        else:
            raise invalid(f"{where}.role must be one of system, developer, user, assistant, tool.",
                          f"{where}.role")
        anthropic_role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1][0] == anthropic_role:
            turns[-1][1].extend(results)
            turns[-1][2].extend(blocks)
        else:
            turns.append((anthropic_role, results, blocks))
    if not turns:
        raise invalid("messages must contain at least one user or assistant message.", "messages")
    return system, [{"role": role, "content": results + blocks} for role, results, blocks in turns]


def _content_blocks(content: Any, where: str, allowed: frozenset[str]) -> list[dict]:
    """String or content parts → Anthropic blocks; whitespace-only text is dropped
    (Anthropic rejects empty text blocks)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    if content is None:
        return []
    if not isinstance(content, list):
        raise _wrong_type(f"{where} must be a string or an array of content parts.", where)
    blocks = []
    for j, part in enumerate(content):
        part_where = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            raise _wrong_type(f"{part_where} must be an object with a string 'type'.", part_where)
        if kind not in allowed:
            message = _UNSUPPORTED_PARTS.get(kind, f"Content part type {kind[:64]!r} is not allowed here.")
            raise invalid(message, part_where, code="unsupported_value")
        if kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"{part_where}.image_url"))
            continue
        text = part.get(kind)  # a text part carries "text", a refusal part "refusal"
        if not isinstance(text, str):
            raise _wrong_type(f"{part_where}.{kind} must be a string.", f"{part_where}.{kind}")
        if text.strip():
            blocks.append({"type": "text", "text": text})
    return blocks


def _image_block(image_url: Any, where: str) -> dict:
    """http(s) URLs become URL sources (never fetched by us); data URLs base64 sources."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    where = f"{where}.url"
    if not isinstance(url, str):
        raise _wrong_type(f"{where} must be a string.", where)
    scheme = url[:8].lower()
    if scheme.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if scheme.startswith("data:"):
        return {"type": "image", "source": _base64_image_source(url, where)}
    raise invalid(f"{where} must be an http(s) URL or a data: URL with base64 image data.", where)


def _base64_image_source(url: str, where: str) -> dict:
    header, comma, data = url.partition(",")
    params = header[5:].split(";")
    if not comma or "base64" not in params[1:]:
        raise invalid(f"{where}: image data URLs must be base64, e.g. data:image/png;base64,<data>.", where)
    declared = params[0].strip().lower()
    if declared not in _IMAGE_TYPES and declared != "image/jpg":
        raise invalid(f"{where}: unsupported image type {declared[:64]!r}; Claude accepts "
                      "image/jpeg, image/png, image/gif and image/webp.", where, code="unsupported_value")
    if len(data) > _MAX_IMAGE_B64_CHARS:
        raise _image_too_large(where)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}: the image data is not valid base64.", where) from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise _image_too_large(where)
    media_type = _sniff_image_type(raw)
    if media_type is None:
        raise invalid(f"{where}: the image data is not a JPEG, PNG, GIF or WebP image.", where)
    return {"type": "base64", "media_type": media_type, "data": data}


def _image_too_large(where: str) -> GatewayError:
    return invalid(f"{where}: the image exceeds the 5 MB limit per image.", where)


def _sniff_image_type(raw: bytes) -> str | None:
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if raw.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if raw[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    return None


def _assistant_blocks(message: dict, where: str) -> list[dict]:
    """Text blocks first, then one ``tool_use`` per tool call (§11.5)."""
    if message.get("function_call") is not None:
        raise _unsupported("The deprecated assistant 'function_call' is not supported; use 'tool_calls'.",
                           f"{where}.function_call")
    blocks = _content_blocks(message.get("content"), f"{where}.content", _ASSISTANT_PARTS)
    tool_calls = message.get("tool_calls")
    if tool_calls is None:
        return blocks
    if not isinstance(tool_calls, list):
        raise _wrong_type(f"{where}.tool_calls must be an array.", f"{where}.tool_calls")
    for j, call in enumerate(tool_calls):
        blocks.append(_tool_use_block(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _tool_use_block(call: Any, where: str) -> dict:
    if not isinstance(call, dict):
        raise _wrong_type(f"{where} must be an object.", where)
    if call.get("type") not in (None, "function"):
        raise invalid(f"{where}.type must be 'function'.", f"{where}.type", code="unsupported_value")
    function = call.get("function")
    if not isinstance(function, dict):
        raise _wrong_type(f"{where}.function must be an object.", f"{where}.function")
    return {
        "type": "tool_use",
        "id": _tool_id(call.get("id"), f"{where}.id"),
        "name": _tool_name(function.get("name"), f"{where}.function.name"),
        "input": _tool_arguments(function.get("arguments"), f"{where}.function.arguments"),
    }


def _tool_arguments(arguments: Any, where: str) -> dict:
    """``arguments`` is a JSON-encoded object; "" (a call without arguments) means {}."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise _wrong_type(f"{where} must be a JSON-encoded string.", where)
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise invalid(f"{where} is not valid JSON.", where) from None
    if not isinstance(value, dict):
        raise invalid(f"{where} must encode a JSON object.", where)
    return value


def _tool_id(value: Any, where: str) -> str:
    """Anthropic ids must match ``^[a-zA-Z0-9_-]+$``; foreign ids are rewritten the same
    way on the call and on its result, with a hash suffix so distinct ids stay distinct."""
    if not isinstance(value, str) or not value:
        raise _wrong_type(f"{where} must be a non-empty string.", where)
    if _TOOL_ID.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    return f"{_TOOL_ID_BAD_CHARS.sub('_', value)[:64]}_{digest}"


def _tool_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise invalid(f"{where} must be 1-64 characters: letters, digits, underscores or dashes.", where)
    return name


def _tool_result_block(message: dict, where: str) -> dict:
    block: dict[str, Any] = {"type": "tool_result",
                             "tool_use_id": _tool_id(message.get("tool_call_id"), f"{where}.tool_call_id")}
    content = message.get("content")
    if isinstance(content, str):
        if content.strip():
            block["content"] = content
    else:
        blocks = _content_blocks(content, f"{where}.content", _TOOL_PARTS)
        if blocks:
            block["content"] = blocks
    return block


def _history_stub_tools(messages: list[dict]) -> list[dict]:
    """Anthropic needs tool definitions whenever the history holds ``tool_use`` blocks; a
    client that sends none offers no tools, so each used name gets an inert stub."""
    names = {block["name"]: None for message in messages if message["role"] == "assistant"
             for block in message["content"] if block["type"] == "tool_use"}
    return [{"name": name, "description": "Used earlier in this conversation; not available now.",
             "input_schema": {"type": "object"}} for name in names]


def _last_assistant_calls_tools(messages: list[dict]) -> bool:
    for message in reversed(messages):
        if message["role"] == "assistant":
            return any(block["type"] == "tool_use" for block in message["content"])
    return False


def _finish_prefill(messages: list[dict], spec: ModelSpec, *, thinking: bool) -> None:
    """A trailing assistant message is a prefill: allowed only where the model accepts it,
    never with thinking, and it must not end in whitespace (Anthropic rejects that)."""
    last = messages[-1]
    if last["role"] != "assistant":
        return
    if not spec.prefill:
        raise invalid("This model does not support prefill: the last message must not be an "
                      "assistant message.", "messages")
    if thinking:
        raise invalid("A final assistant message (prefill) cannot be combined with reasoning_effort.",
                      "messages")
    tail = last["content"][-1]
    if tail["type"] == "text":
        tail["text"] = tail["text"].rstrip()


# --- tools and response_format -----------------------------------------------------------

def _tooling(body: dict, spec: ModelSpec) -> tuple[list[dict], dict | None, str | None, dict | None]:
    """Returns (tools, tool_choice, json_mode, native output format)."""
    tools = _tools(body.get("tools"))
    tool_choice = _tool_choice(body.get("tool_choice"), {tool["name"] for tool in tools})
    parallel = _opt_bool(body, "parallel_tool_calls")
    json_mode, json_spec = _response_format(body.get("response_format"), spec)
    if json_mode == JSON_TOOL_NAME:
        if tools:
            raise invalid("response_format cannot be combined with tools on this model (JSON mode is "
                          "emulated with a forced tool).", "response_format")
        return [json_spec], {"type": "tool", "name": JSON_TOOL_NAME}, json_mode, None
    if parallel is False and tools and (tool_choice is None or tool_choice["type"] != "none"):
        tool_choice = {**(tool_choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return tools, tool_choice, json_mode, json_spec


def _tools(raw: Any) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _wrong_type("tools must be an array.", "tools")
    tools: list[dict] = []
    seen: set[str] = set()
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _wrong_type(f"{where} must be an object.", where)
        if tool.get("type") != "function":
            raise invalid(f"{where}.type must be 'function': only function tools are supported.",
                          f"{where}.type", code="unsupported_value")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _wrong_type(f"{where}.function must be an object.", f"{where}.function")
        name = _tool_name(function.get("name"), f"{where}.function.name")
        if name in seen:
            raise invalid(f"Duplicate tool name {name!r}.", f"{where}.function.name")
        seen.add(name)
        converted: dict[str, Any] = {"name": name}
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise _wrong_type(f"{where}.function.description must be a string.", f"{where}.function.description")
        if description:
            converted["description"] = description
        converted["input_schema"] = _object_schema(function.get("parameters"), f"{where}.function.parameters")
        tools.append(converted)
    return tools


def _object_schema(schema: Any, where: str) -> dict:
    """Tool inputs are JSON objects: a missing schema means no parameters, a missing
    ``type`` is taken as object, any other ``type`` is a 400."""
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise _wrong_type(f"{where} must be a JSON Schema object.", where)
    kind = schema.get("type")
    if kind is None:
        return {"type": "object", **schema}
    if kind != "object":
        raise invalid(f"{where} must describe a JSON object (type 'object').", where)
    return schema


def _tool_choice(raw: Any, names: set[str]) -> dict | None:
    if raw is None:
        return None
    if isinstance(raw, str) and raw in _TOOL_CHOICES:
        choice = {"type": _TOOL_CHOICES[raw]}
    elif isinstance(raw, dict) and raw.get("type") == "function":
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise _wrong_type("tool_choice.function.name must be a string.", "tool_choice")
        choice = {"type": "tool", "name": name}
    else:
        raise invalid("tool_choice must be 'auto', 'required', 'none' or "
                      "{\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice")
    if not names:
        if choice["type"] == "none":
            return None
        raise invalid("tool_choice requires tools.", "tool_choice")
    if choice["type"] == "tool" and choice["name"] not in names:
        raise invalid(f"tool_choice names {choice['name'][:64]!r}, which is not one of the tools.", "tool_choice")
    return choice


def _response_format(raw: Any, spec: ModelSpec) -> tuple[str | None, dict | None]:
    """Returns (json_mode, native output format or forced-tool definition)."""
    if raw is None:
        return None, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None, None
    if kind == "json_object":
        return JSON_TOOL_NAME, _json_tool(_ANY_OBJECT_SCHEMA, None)
    if kind != "json_schema":
        raise invalid("response_format.type must be 'text', 'json_object' or 'json_schema'.",
                      "response_format")
    json_schema = raw.get("json_schema")
    if not isinstance(json_schema, dict):
        raise _wrong_type("response_format.json_schema must be an object.", "response_format.json_schema")
    schema = json_schema.get("schema")
    where = "response_format.json_schema.schema"
    if not isinstance(schema, dict):
        raise _wrong_type(f"{where} must be a JSON Schema object.", where)
    if spec.structured_output:
        return JSON_MODE_NATIVE, {"type": "json_schema", "schema": schema}
    description = json_schema.get("description")
    return JSON_TOOL_NAME, _json_tool(_object_schema(schema, where),
                                      description if isinstance(description, str) else None)


def _json_tool(schema: dict, description: str | None) -> dict:
    return {"name": JSON_TOOL_NAME,
            "description": description or "Respond with the answer as this JSON object.",
            "input_schema": schema}


# --- sampling, limits, thinking ------------------------------------------------------------

def _stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise _wrong_type("stop must be a string or an array of strings.", "stop")
    if len(sequences) > 4:
        raise invalid("stop accepts at most 4 sequences.", "stop")
    if not all(s.strip() for s in sequences):
        raise invalid("stop sequences must contain non-whitespace characters (Claude rejects "
                      "whitespace-only stop sequences).", "stop")
    return sequences or None


def _sampling(body: dict, spec: ModelSpec) -> dict:
    """temperature/top_p/top_k as the model accepts them (§5.4): 0–1 only; defaults dropped
    where sampling is fixed; a no-op top_p=1 dropped next to temperature."""
    temperature = _opt_number(body, "temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise invalid(f"temperature must be between 0 and 1 for Claude models (got {temperature}).",
                      "temperature")
    top_p = _opt_number(body, "top_p")
    if top_p is not None and not 0 <= top_p <= 1:
        raise invalid(f"top_p must be between 0 and 1 (got {top_p}).", "top_p")
    top_k = body.get("top_k")
    if top_k is not None and (type(top_k) is not int or top_k < 0):
        raise _wrong_type("top_k must be a non-negative integer.", "top_k")
    if not spec.accepts_sampling:
        for name, value in (("temperature", temperature), ("top_p", top_p)):
            if value is not None and value != 1:
                raise _unsupported(f"{name} cannot be changed for this model; omit it.", name)
        if top_k is not None:
            raise _unsupported("top_k cannot be set for this model; omit it.", "top_k")
        return {}
    if temperature is not None and top_p is not None:
        if top_p == 1:
            top_p = None
        elif not spec.accepts_temperature_with_top_p:
            raise invalid("temperature and top_p cannot both be set for this model; set only one.", "top_p")
    sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
    return {name: value for name, value in sampling.items() if value is not None}


def _max_tokens(body: dict, spec: ModelSpec) -> tuple[int, str | None]:
    """Returns (effective max_tokens, name of the field that set it or None for default)."""
    chosen: tuple[int, str] | None = None
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise invalid(f"{name} must be a positive integer.", name)
        chosen = chosen or (value, name)
    if chosen is None:
        return min(DEFAULT_MAX_TOKENS, spec.max_output_tokens), None
    return min(chosen[0], spec.max_output_tokens), chosen[1]


def _thinking_budget(effort: Any, spec: ModelSpec) -> int | None:
    if effort is None or effort == "none":
        return None
    budget = _EFFORT_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        raise invalid("reasoning_effort must be one of none, minimal, low, medium, high, xhigh, max.",
                      "reasoning_effort")
    if not spec.thinking:
        raise _unsupported("reasoning_effort is not supported by this model.", "reasoning_effort")
    return budget


def _check_thinking_compatible(sampling: dict, tool_choice: dict | None, json_mode: str | None) -> None:
    """Extended thinking forbids changed temperature/top_k, top_p < 0.95 and forced tools (§5.4)."""
    temperature = sampling.pop("temperature", None)
    if temperature is not None and temperature != 1:
        raise invalid("temperature cannot be changed together with reasoning_effort on Claude models.",
                      "temperature")
    if "top_k" in sampling:
        raise invalid("top_k cannot be set together with reasoning_effort.", "top_k")
    if sampling.get("top_p", 1) < 0.95:
        raise invalid("top_p must be between 0.95 and 1 together with reasoning_effort.", "top_p")
    if tool_choice and tool_choice["type"] in ("any", "tool"):
        if json_mode == JSON_TOOL_NAME:
            raise invalid("response_format cannot be combined with reasoning_effort on this model.",
                          "response_format")
        raise invalid("tool_choice must be 'auto' or 'none' together with reasoning_effort.", "tool_choice")


def _fit_thinking(budget: int, max_tokens: int, max_field: str | None, spec: ModelSpec) -> tuple[int, int]:
    """OpenAI's max includes reasoning tokens and Anthropic wants budget < max_tokens: without
    an explicit max, make room for the budget plus a default answer; with one, fit under it."""
    if max_field is None:
        max_tokens = min(budget + DEFAULT_MAX_TOKENS, spec.max_output_tokens)
    if max_tokens <= _MIN_THINKING_BUDGET:
        field = max_field or "max_completion_tokens"
        raise invalid(f"{field} must be greater than {_MIN_THINKING_BUDGET} when reasoning_effort is set "
                      "(it includes the reasoning tokens).", field)
    return max_tokens, min(budget, max_tokens - 1)


def _end_user(body: dict) -> str | None:
    user = _opt_str(body, "user", 256)
    safety_identifier = _opt_str(body, "safety_identifier", 256)
    return user if user is not None else safety_identifier


def _looks_like_pii(value: str) -> bool:
    """Anthropic's metadata.user_id must not carry an e-mail address or phone number; when
    in doubt leave it out (it only serves abuse tracking)."""
    if _EMAIL.search(value):
        return True
    return bool(_PHONE.fullmatch(value)) and 7 <= sum(c.isdigit() for c in value) <= 15


# --- worst-case reservation -----------------------------------------------------------------

def estimate_input_tokens_upper_bound(payload: dict) -> int:
    """An upper bound of the input tokens of a translated payload, for reserving worst-case cost.

    Every token covers at least one UTF-8 byte, so text bytes bound text tokens. Each block
    and message adds a fixed allowance for role/format tokens; an image counts
    ``IMAGE_TOKENS_BOUND`` (Claude downscales images to ~1,600 tokens; the margin covers
    newer high-resolution models). Tool definitions and a native output schema are rendered
    into a prompt we cannot see: count twice their JSON bytes plus a fixed allowance for the
    tool-use system prompt.
    """
    total = _REQUEST_OVERHEAD_TOKENS + _blocks_bound(payload.get("system"))
    for message in payload.get("messages", ()):
        total += _BLOCK_OVERHEAD_TOKENS + _blocks_bound(message.get("content"))
    tools = payload.get("tools")
    if tools:
        total += _TOOLS_OVERHEAD_TOKENS + 2 * len(orjson.dumps(tools))
    output_format = payload.get("output_config", {}).get("format")
    if output_format:
        total += _TOOLS_OVERHEAD_TOKENS + 2 * len(orjson.dumps(output_format))
    return total


def _blocks_bound(content: Any) -> int:
    if not content:
        return 0
    if isinstance(content, str):
        return len(content.encode())
    total = 0
    for block in content:
        kind = block.get("type")
        if kind == "text":
            size = len(block["text"].encode())
        elif kind == "image":
            size = IMAGE_TOKENS_BOUND
        elif kind == "tool_use":
            size = len(block["name"]) + len(orjson.dumps(block["input"]))
        elif kind == "tool_result":
            size = _blocks_bound(block.get("content"))
        else:
            size = len(orjson.dumps(block))
        total += _BLOCK_OVERHEAD_TOKENS + size
    return total


# ---------------------------------------------------------------------------------------
# Response
# ---------------------------------------------------------------------------------------

def map_finish_reason(stop_reason: str | None, t: Translated) -> str:
    """Anthropic stop_reason → OpenAI finish_reason; the forced JSON tool is an answer, not a
    tool call. Unknown or missing reasons become "stop"."""
    reason = _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if reason == "tool_calls" and t.json_tool is not None:
        return "stop"
    return reason


def translate_response(msg: dict, t: Translated, *, completion_id: str, created: int) -> dict:
    """An Anthropic message → an OpenAI ``chat.completion`` (the caller adds ``usage.cost``).

    Text blocks are joined into ``content``; ``tool_use`` blocks become ``tool_calls``;
    thinking blocks are not returned. In emulated JSON mode the forced tool's input is the
    ``content`` (compact JSON) and there are no tool calls.
    """
    texts: list[str] = []
    tool_calls: list[dict] = []
    json_input: Any = None
    for block in msg.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            if t.json_tool is not None and block.get("name") == t.json_tool:
                json_input = block.get("input")
            else:
                tool_calls.append({"id": block.get("id"), "type": "function", "function": {
                    "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    if json_input is not None:
        content: str | None = orjson.dumps(json_input).decode()
    else:
        content = "".join(texts) or None
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": t.requested_model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": map_finish_reason(msg.get("stop_reason"), t)}],
        "usage": openai_usage(normalize_usage(msg.get("usage"))),
        "system_fingerprint": None,
    }


# --- usage ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Usage:
    """Anthropic usage as the four disjoint input classes plus output (SPEC §5).

    ``input_tokens`` is Anthropic's uncached input, which excludes cache reads and writes;
    no class overlaps another, so billing sums them without counting any twice.
    """

    input_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write_5m + self.cache_write_1h + self.cache_read

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


def openai_usage(u: Usage) -> dict:
    """OpenAI usage: ``prompt_tokens`` is all input incl. cache, ``cached_tokens`` the reads."""
    prompt_tokens = u.prompt_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


# --- upstream errors ------------------------------------------------------------------------

_CREDENTIALS_MESSAGE = ("The gateway's upstream credentials were rejected by Anthropic. This is a gateway "
                        "configuration problem, not a problem with your request or key; contact the operator.")

# Anthropic error type → (our status, OpenAI type, OpenAI code, fixed message; None = upstream's)
_UPSTREAM_ERRORS: dict[str, tuple[int, str, str | None, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None, None),
    "authentication_error": (502, "server_error", "upstream_auth_error", _CREDENTIALS_MESSAGE),
    "permission_error": (502, "server_error", "upstream_auth_error", _CREDENTIALS_MESSAGE),
    "billing_error": (502, "server_error", "upstream_billing_error",
                      "The gateway's upstream Anthropic account has a billing problem; contact the operator."),
    "not_found_error": (404, "invalid_request_error", "model_not_found", None),
    "request_too_large": (413, "invalid_request_error", "request_too_large",
                          "The request is too large for the upstream API (32 MB maximum)."),
    "rate_limit_error": (429, "requests", "rate_limit_exceeded",
                         "Upstream rate limit reached; retry after the delay given in Retry-After."),
    "api_error": (502, "server_error", "upstream_error",
                  "The upstream API failed with an internal error; please retry."),
    "timeout_error": (504, "server_error", "timeout", "The upstream API timed out; please retry."),
    "overloaded_error": (503, "server_error", "overloaded",
                         "Anthropic's API is temporarily overloaded; please retry shortly."),
}
_TYPE_BY_STATUS = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 408: "timeout_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
    504: "timeout_error", 529: "overloaded_error",
}
_NOT_RETRYABLE_TYPES = frozenset({"authentication_error", "permission_error", "billing_error"})
_SPEND_LIMIT_MESSAGE = "The gateway's upstream spend limit is reached; contact the operator."
_RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_MAX_UPSTREAM_MESSAGE = 1_000


def is_retryable(status: int) -> bool:
    """Upstream statuses worth retrying before the first byte reaches the client."""
    return status in _RETRYABLE_STATUSES


def anthropic_error_to_gateway(status: int, body: bytes | str | dict | None, headers: Any = None, *,
                               not_found_hint: str | None = None) -> GatewayError:
    """Map an upstream error response to the OpenAI-shaped error the client gets.

    The HTTP status decides (the body may be an HTML page from a proxy); the body's error
    type only when the status is unknown. Upstream auth/billing failures are the gateway's
    problem: 502 with ``x-should-retry: false``, never blaming the client or echoing a key.
    Retry-After (and retry-after-ms) are copied.
    """
    error_type, message, details = _error_fields(body)
    kind = _TYPE_BY_STATUS.get(status) or (error_type if error_type in _UPSTREAM_ERRORS else None)
    headers_out = _retry_headers(headers)
    if kind is None:
        return GatewayError(502, f"Unexpected upstream error (HTTP {status}).", type="server_error",
                            code="upstream_error", headers=headers_out)
    return _gateway_error(kind, message, details, headers_out, not_found_hint)


def anthropic_stream_error(data: Any) -> GatewayError:
    """Map an in-stream ``error`` event (``{"type":"error","error":{type, message}}``)."""
    error_type, message, details = _error_fields(data)
    return _gateway_error(error_type if error_type in _UPSTREAM_ERRORS else "api_error",
                          message, details, {}, None)


def _gateway_error(kind: str, upstream_message: str | None, details: Mapping, headers: dict[str, str],
                   not_found_hint: str | None) -> GatewayError:
    status, type_, code, message = _UPSTREAM_ERRORS[kind]
    if kind in _NOT_RETRYABLE_TYPES:
        headers["x-should-retry"] = "false"
    if kind == "rate_limit_error" and details.get("error_code") == "enforced_spend_limit_reached":
        message = _SPEND_LIMIT_MESSAGE
        headers["x-should-retry"] = "false"
    if kind == "not_found_error":
        message = "The model was not found upstream" + (f" ({upstream_message})." if upstream_message else ".")
        if not_found_hint:
            message += " " + not_found_hint
    elif message is None:
        message = upstream_message or "The upstream API rejected the request."
    return GatewayError(status, message, type=type_, code=code, headers=headers)


def _error_fields(body: Any) -> tuple[str | None, str | None, Mapping]:
    """(error type, message, details) from an Anthropic error body, tolerating anything."""
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, None, {}
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, {}
    error_type = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    return error_type, message[:_MAX_UPSTREAM_MESSAGE] if message else None, details


def _retry_headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        return {}
    wanted = {"retry-after", "retry-after-ms"}
    return {name.lower(): value for name, value in headers.items()
            if isinstance(name, str) and name.lower() in wanted and value}
