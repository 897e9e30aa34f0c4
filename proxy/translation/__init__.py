"""OpenAI Chat Completions ⇄ Anthropic Messages: pure, synchronous translation.

Nothing here does I/O, so the hot path calls it inline and the unit tests pin every rule.
One module per concept: ``request`` (the body, with ``messages``, ``images``, ``tools`` and
``fields``), ``response``, ``usage`` (token counts and the stream meter), ``streaming``
(events → chunks) and ``errors`` (upstream errors → OpenAI errors). The rules and the
choices made where the contract leaves room are in ``request``'s docstring; the wire
formats are described in ``docs/wire-format.md``.
"""
from .errors import anthropic_error_to_gateway, anthropic_stream_error
from .images import MAX_IMAGE_BYTES
from .request import DEFAULT_MAX_TOKENS, Translated, translate_request
from .response import map_finish_reason, translate_response
from .streaming import DONE, StreamTranslator, sse_error
from .tools import JSON_MODE_NATIVE, JSON_TOOL_NAME
from .usage import StreamMeter, Usage, normalize_usage, openai_usage

__all__ = [
    "DEFAULT_MAX_TOKENS", "DONE", "JSON_MODE_NATIVE", "JSON_TOOL_NAME", "MAX_IMAGE_BYTES",
    "StreamMeter", "StreamTranslator", "Translated", "Usage", "anthropic_error_to_gateway", "anthropic_stream_error",
    "map_finish_reason", "normalize_usage", "openai_usage", "sse_error", "translate_request", "translate_response",
]
