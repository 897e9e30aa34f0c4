"""Responses API tools → Anthropic tools, and upstream tool names back to what the client offered.

Tools arrive as Codex CLI and the SDKs send them:

- ``function`` tools (flat: ``name``, ``description``, ``parameters``, ``strict``) become
  Anthropic tools as on Chat Completions (``strict`` is accepted and ignored).
- A ``namespace`` tool groups function (or custom) tools. Anthropic has no namespaces, so
  each member goes upstream under one flat name (``<namespace>__<name>``, shortened with a
  hash suffix when it would not be a valid tool name) and every call the model makes is
  mapped back to ``{name, namespace}``: Codex dispatches namespaced calls only that way.
- A ``custom`` (freeform) tool takes one string. Upstream it is a tool with a single string
  property ``input``; its grammar or pattern, if any, is spelled out in the description.
  Calls come back as ``custom_tool_call`` items carrying that string.
- Hosted tools (``web_search``, ``file_search``, ``mcp``, ``local_shell``, ...) run on
  OpenAI's servers; the gateway cannot run them. Merely offered, they are left out (the
  caller names them in an ``x-tokenhub-ignored-tools`` header); a ``tool_choice`` that
  forces one is a 400 naming it.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from proxy.errors import invalid

from .caching import Breakpoints
from .fields import opt_bool, wrong_type
from .messages import tool_name
from .tools import check_tool_choice, object_schema

FUNCTION, CUSTOM = "function", "custom"
HOSTED_TOOLS = frozenset({
    "web_search", "web_search_preview", "web_search_preview_2025_03_11", "web_search_2025_08_26",
    "file_search", "computer_use_preview", "computer_use", "computer", "code_interpreter", "mcp",
    "image_generation", "local_shell", "shell", "apply_patch", "tool_search",
})
_VALID_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_NAMESPACE_SEPARATOR = "__"
_TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}


@dataclass(frozen=True, slots=True)
class ClientTool:
    """A tool as the client named it."""

    kind: str                       # FUNCTION or CUSTOM
    name: str
    namespace: str | None = None


class ToolNames:
    """Upstream (flat) tool name ⇄ the client's tool."""

    __slots__ = ("by_upstream", "_upstream")

    def __init__(self) -> None:
        self.by_upstream: dict[str, ClientTool] = {}
        self._upstream: dict[tuple[str | None, str], str] = {}

    def add(self, tool: ClientTool, where: str) -> str:
        key = (tool.namespace, tool.name)
        if key in self._upstream:
            label = f"{tool.namespace}.{tool.name}" if tool.namespace else tool.name
            raise invalid(f"Duplicate tool name {label[:100]!r}.", where)
        upstream = flat_name(tool.namespace, tool.name)
        if upstream in self.by_upstream:  # e.g. a function literally named "ns__tool" next to namespace ns
            upstream = _hashed(f"{upstream}_{tool.kind}", f"{tool.namespace}\x00{tool.name}")
        self.by_upstream[upstream] = tool
        self._upstream[key] = upstream
        return upstream

    def upstream(self, name: str, namespace: str | None = None) -> str:
        """The upstream name of a tool the client refers to (in a call item or tool_choice);
        a tool no longer offered gets the flat name it would have had."""
        return self._upstream.get((namespace, name)) or flat_name(namespace, name)

    def client(self, upstream: str) -> ClientTool:
        """The client's tool for a name the model called (unknown names: a plain function)."""
        return self.by_upstream.get(upstream) or ClientTool(FUNCTION, upstream)


def flat_name(namespace: str | None, name: str) -> str:
    if not namespace:
        return name if _VALID_NAME.fullmatch(name) else _hashed(name, name)
    joined = f"{namespace}{_NAMESPACE_SEPARATOR}{name}"
    return joined if _VALID_NAME.fullmatch(joined) else _hashed(joined, f"{namespace}\x00{name}")


def _hashed(name: str, identity: str) -> str:
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return f"{_BAD_NAME_CHARS.sub('_', name)[:53]}_{digest}"


@dataclass(slots=True)
class Tooling:
    tools: list[dict]               # Anthropic tool definitions
    names: ToolNames
    ignored: list[str]              # hosted tool types left out
    tool_choice: dict | None        # Anthropic tool_choice (before parallel/JSON mode are applied)


def translate_tools(body: dict, marks: Breakpoints) -> Tooling:
    """``tools`` and ``tool_choice`` of a Responses request (a tool's ``cache_control``, as
    OpenRouter spells it on Chat Completions, is collected in ``marks``)."""
    names = ToolNames()
    tools: list[dict] = []
    ignored: list[str] = []
    raw = body.get("tools")
    if raw is not None and not isinstance(raw, list):
        raise wrong_type("tools must be an array.", "tools")
    for i, tool in enumerate(raw or ()):
        where = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str):
            raise wrong_type(f"{where} must be an object with a string 'type'.", where)
        if kind in (FUNCTION, CUSTOM):
            tools.append(_member(tool, None, names, where, marks))
        elif kind == "namespace":
            tools.extend(_namespace(tool, names, where, marks))
        elif kind in HOSTED_TOOLS:
            if kind not in ignored:
                ignored.append(kind)
        else:
            raise invalid(f"{where}.type {kind[:64]!r} is not supported: use function, namespace or custom tools.",
                          f"{where}.type", code="unsupported_value")
    choice = _tool_choice(body.get("tool_choice"), names, tools)
    return Tooling(tools, names, ignored, choice)


def _namespace(tool: dict, names: ToolNames, where: str, marks: Breakpoints) -> list[dict]:
    namespace = tool_name(tool.get("name"), f"{where}.name")
    members = tool.get("tools")
    if not isinstance(members, list) or not members:
        raise wrong_type(f"{where}.tools must be a non-empty array of function tools.", f"{where}.tools")
    out = []
    for j, member in enumerate(members):
        member_where = f"{where}.tools[{j}]"
        kind = member.get("type") if isinstance(member, dict) else None
        if kind not in (FUNCTION, CUSTOM):
            raise invalid(f"{member_where}.type must be 'function' or 'custom'.", f"{member_where}.type",
                          code="unsupported_value")
        out.append(_member(member, namespace, names, member_where, marks))
    return out


def _member(tool: dict, namespace: str | None, names: ToolNames, where: str, marks: Breakpoints) -> dict:
    kind = tool["type"]
    name = tool_name(tool.get("name"), f"{where}.name")
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise wrong_type(f"{where}.description must be a string.", f"{where}.description")
    opt_bool(tool, "strict")
    if kind == FUNCTION:
        schema = object_schema(tool.get("parameters"), f"{where}.parameters")
    else:
        description, schema = _freeform(tool.get("format"), description, where)
    converted: dict[str, Any] = {"name": names.add(ClientTool(kind, name, namespace), f"{where}.name")}
    if description:
        converted["description"] = description
    converted["input_schema"] = schema
    marks.mark(converted, tool.get("cache_control"), f"{where}.cache_control", "tools")
    return converted


def _freeform(fmt: Any, description: str | None, where: str) -> tuple[str, dict]:
    """A custom tool as a one-string tool; its input format goes into the description."""
    text = description or ""
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "grammar":
            syntax, definition = fmt.get("syntax"), fmt.get("definition")
            if not isinstance(syntax, str) or not isinstance(definition, str):
                raise wrong_type(f"{where}.format needs string 'syntax' and 'definition'.", f"{where}.format")
            text += f"\n\nThe input must follow this {syntax} grammar:\n{definition}"
        elif kind != "text":
            raise invalid(f"{where}.format.type must be 'text' or 'grammar'.", f"{where}.format")
    schema = {"type": "object", "properties": {"input": {
        "type": "string", "description": "The tool's whole input, as raw text (not JSON-encoded)."}},
        "required": ["input"], "additionalProperties": False}
    return text.strip(), schema


def _tool_choice(raw: Any, names: ToolNames, tools: list[dict]) -> dict | None:
    """auto / none / required, a named function or custom tool, or ``allowed_tools`` (which
    narrows the tools sent upstream). A hosted tool cannot be forced: 400."""
    if raw is None:
        return None
    if isinstance(raw, str) and raw in _TOOL_CHOICES:
        choice: dict = {"type": _TOOL_CHOICES[raw]}
    elif isinstance(raw, dict) and raw.get("type") in (FUNCTION, CUSTOM):
        name, namespace = raw.get("name"), raw.get("namespace")
        if not isinstance(name, str) or not (namespace is None or isinstance(namespace, str)):
            raise wrong_type("tool_choice.name must be a string.", "tool_choice.name")
        choice = {"type": "tool", "name": names.upstream(name, namespace)}
        if choice["name"] not in names.by_upstream:
            raise invalid(f"tool_choice names {name[:64]!r}, which is not one of the tools.", "tool_choice")
    elif isinstance(raw, dict) and raw.get("type") == "allowed_tools":
        choice = _allowed_tools(raw, names, tools)
    elif isinstance(raw, dict) and raw.get("type") in HOSTED_TOOLS:
        raise invalid(f"tool_choice forces the hosted tool {raw['type']!r}, which this gateway cannot run; "
                      "offer function tools instead.", "tool_choice", code="unsupported_value")
    else:
        raise invalid("tool_choice must be 'auto', 'required', 'none', {\"type\": \"function\", \"name\": ...}, "
                      "{\"type\": \"custom\", \"name\": ...} or {\"type\": \"allowed_tools\", ...}.", "tool_choice")
    if not tools and choice["type"] in ("auto", "none"):
        return None  # e.g. only hosted tools were offered, and all were left out
    return check_tool_choice(choice, {tool["name"] for tool in tools})


def _allowed_tools(raw: dict, names: ToolNames, tools: list[dict]) -> dict:
    mode = raw.get("mode", "auto")
    if mode not in ("auto", "required"):
        raise invalid("tool_choice.mode must be 'auto' or 'required'.", "tool_choice.mode")
    listed = raw.get("tools")
    if not isinstance(listed, list):
        raise wrong_type("tool_choice.tools must be an array.", "tool_choice.tools")
    allowed = set()
    for j, ref in enumerate(listed):
        where = f"tool_choice.tools[{j}]"
        kind = ref.get("type") if isinstance(ref, dict) else None
        if kind in HOSTED_TOOLS:
            raise invalid(f"{where} allows the hosted tool {kind!r}, which this gateway cannot run.", where,
                          code="unsupported_value")
        name = ref.get("name") if kind in (FUNCTION, CUSTOM) else None
        if not isinstance(name, str) or names.upstream(name, ref.get("namespace")) not in names.by_upstream:
            raise invalid(f"{where} must name one of the function or custom tools.", where)
        allowed.add(names.upstream(name, ref.get("namespace")))
    if not allowed:
        raise invalid("tool_choice.tools must name at least one tool.", "tool_choice.tools")
    tools[:] = [tool for tool in tools if tool["name"] in allowed]
    return {"type": "auto" if mode == "auto" else "any"}
