"""Reading one field of a client request: type checks that fail as a 400 naming the field."""
from __future__ import annotations

import math

from proxy.errors import GatewayError, invalid

DEFAULT_MAX_TOKENS = 1024  # output tokens when the client sets no maximum


def unsupported(message: str, param: str) -> GatewayError:
    return invalid(message, param, code="unsupported_parameter")


def wrong_type(message: str, param: str) -> GatewayError:
    return invalid(message, param, code="invalid_type")


def opt_bool(body: dict, name: str) -> bool | None:
    value = body.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise wrong_type(f"{name} must be a boolean.", name)


def opt_number(body: dict, name: str) -> int | float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise wrong_type(f"{name} must be a number.", name)
    return value


def opt_str(body: dict, name: str, max_len: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise wrong_type(f"{name} must be a string.", name)
    if len(value) > max_len:
        raise invalid(f"{name} must be at most {max_len} characters.", name)
    return value


