"""Tools, tool_choice and response_format (JSON mode, native or emulated with a forced tool)."""
from __future__ import annotations

from typing import Any

from proxy.errors import invalid
from proxy.modelspec import ModelSpec

from .caching import Breakpoints
from .fields import opt_bool, wrong_type
from .messages import tool_name

_ANY_OBJECT_SCHEMA = {"type": "object", "additionalProperties": True}
_TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}

JSON_MODE_NATIVE = "native"
JSON_TOOL_NAME = "json_response"


# --- tools and response_format -----------------------------------------------------------

def tooling(body: dict, spec: ModelSpec, marks: Breakpoints | None = None,
            ) -> tuple[list[dict], dict | None, str | None, dict | None]:
    """Returns (tools, tool_choice, json_mode, native output format); tools' cache
    breakpoints are collected in ``marks``."""
    tools = _tools(body.get("tools"), Breakpoints() if marks is None else marks)
    tool_choice = _tool_choice(body.get("tool_choice"), {tool["name"] for tool in tools})
    json_mode, json_spec = _response_format(body.get("response_format"), spec)
    return combine_tooling(tools, tool_choice, opt_bool(body, "parallel_tool_calls"), json_mode, json_spec,
                           "response_format")


def combine_tooling(tools: list[dict], tool_choice: dict | None, parallel: bool | None, json_mode: str | None,
                    json_spec: dict | None, format_field: str) -> tuple[list[dict], dict | None, str | None, dict | None]:
    """Tools, tool choice and JSON mode together: emulated JSON mode is a forced tool and
    excludes user tools; ``parallel_tool_calls: false`` becomes ``disable_parallel_tool_use``.
    Returns (tools, tool_choice, json_mode, native output format)."""
    if json_mode == JSON_TOOL_NAME:
        assert json_spec is not None  # the forced tool's definition
        if tools:
            raise invalid(f"{format_field} cannot be combined with tools on this model (JSON mode is "
                          "emulated with a forced tool).", format_field)
        return [json_spec], {"type": "tool", "name": JSON_TOOL_NAME}, json_mode, None
    if parallel is False and tools and (tool_choice is None or tool_choice["type"] != "none"):
        tool_choice = {**(tool_choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    return tools, tool_choice, json_mode, json_spec


def _tools(raw: Any, marks: Breakpoints) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise wrong_type("tools must be an array.", "tools")
    tools: list[dict] = []
    seen: set[str] = set()
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise wrong_type(f"{where} must be an object.", where)
        if tool.get("type") != "function":
            raise invalid(f"{where}.type must be 'function': only function tools are supported.",
                          f"{where}.type", code="unsupported_value")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise wrong_type(f"{where}.function must be an object.", f"{where}.function")
        name = tool_name(function.get("name"), f"{where}.function.name")
        if name in seen:
            raise invalid(f"Duplicate tool name {name!r}.", f"{where}.function.name")
        seen.add(name)
        converted: dict[str, Any] = {"name": name}
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise wrong_type(f"{where}.function.description must be a string.", f"{where}.function.description")
        if description:
            converted["description"] = description
        converted["input_schema"] = object_schema(function.get("parameters"), f"{where}.function.parameters")
        _mark_tool(converted, tool, function, where, marks)
        tools.append(converted)
    return tools


def _mark_tool(converted: dict, tool: dict, function: dict, where: str, marks: Breakpoints) -> None:
    """``cache_control`` beside ``type``/``function`` (OpenRouter) or inside ``function`` (LiteLLM)."""
    outer, inner = tool.get("cache_control"), function.get("cache_control")
    if outer is not None and inner is not None:
        raise invalid(f"Set cache_control on {where} or on {where}.function, not both.",
                      f"{where}.function.cache_control")
    if inner is not None:
        marks.mark(converted, inner, f"{where}.function.cache_control", "tools")
    else:
        marks.mark(converted, outer, f"{where}.cache_control", "tools")


def object_schema(schema: Any, where: str) -> dict:
    """Tool inputs are JSON objects: a missing schema means no parameters, a missing
    ``type`` is taken as object, any other ``type`` is a 400."""
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise wrong_type(f"{where} must be a JSON Schema object.", where)
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
            raise wrong_type("tool_choice.function.name must be a string.", "tool_choice")
        choice = {"type": "tool", "name": name}
    else:
        raise invalid("tool_choice must be 'auto', 'required', 'none' or "
                      "{\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice")
    return check_tool_choice(choice, names)


def check_tool_choice(choice: dict, names: set[str]) -> dict | None:
    """An Anthropic tool_choice against the offered tool names: none without tools is no choice."""
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
        return json_object_mode()
    if kind != "json_schema":
        raise invalid("response_format.type must be 'text', 'json_object' or 'json_schema'.",
                      "response_format")
    json_schema = raw.get("json_schema")
    if not isinstance(json_schema, dict):
        raise wrong_type("response_format.json_schema must be an object.", "response_format.json_schema")
    return json_schema_mode(json_schema, spec, "response_format.json_schema")


def json_object_mode() -> tuple[str, dict]:
    """``json_object``: a forced tool with a permissive object schema, on every model."""
    return JSON_TOOL_NAME, _json_tool(_ANY_OBJECT_SCHEMA, None)


def json_schema_mode(json_schema: dict, spec: ModelSpec, where: str) -> tuple[str, dict]:
    """``json_schema`` (``{schema, description?}`` at ``where``): native structured output where
    the model has it, else a forced tool. Returns (json_mode, output format or tool)."""
    schema = json_schema.get("schema")
    where = f"{where}.schema"
    if not isinstance(schema, dict):
        raise wrong_type(f"{where} must be a JSON Schema object.", where)
    if spec.structured_output:
        return JSON_MODE_NATIVE, {"type": "json_schema", "schema": schema}
    description = json_schema.get("description")
    return JSON_TOOL_NAME, _json_tool(object_schema(schema, where),
                                      description if isinstance(description, str) else None)


def _json_tool(schema: dict, description: str | None) -> dict:
    return {"name": JSON_TOOL_NAME,
            "description": description or "Respond with the answer as this JSON object.",
            "input_schema": schema}
