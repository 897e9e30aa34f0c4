"""Request validation: the top-level fields of a Messages request, with the real API's
400 messages."""
from __future__ import annotations

import orjson

from .content import Scan
from .errors import bad


def validate(req: object) -> Scan:
    if not isinstance(req, dict):
        raise bad("Input should be a valid dictionary")
    model = req.get("model")
    if model is None:
        raise bad("model: Field required")
    if not isinstance(model, str):
        raise bad("model: Input should be a valid string")
    max_tokens = req.get("max_tokens")
    if max_tokens is None:
        raise bad("max_tokens: Field required")
    if type(max_tokens) is not int:
        raise bad("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise bad("max_tokens: Input should be greater than or equal to 1")
    messages = req.get("messages")
    if messages is None:
        raise bad("messages: Field required")
    if not isinstance(messages, list):
        raise bad("messages: Input should be a valid list")
    if not messages:
        raise bad("messages: at least one message is required")
    temperature = req.get("temperature")
    if temperature is not None:
        if type(temperature) not in (int, float):
            raise bad("temperature: Input should be a valid number")
        if temperature > 1:
            raise bad("temperature: Input should be less than or equal to 1")
        if temperature < 0:
            raise bad("temperature: Input should be greater than or equal to 0")
    tools = req.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad("tools: Input should be a valid list")
    scan = Scan()
    scan.system(req.get("system"))
    last = len(messages) - 1
    for index, message in enumerate(messages):
        scan.message(message, index, index == last)
    if tools:
        scan.text_bytes += len(orjson.dumps(tools))
    return scan
