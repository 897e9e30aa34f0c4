"""A small value that satisfies a JSON schema: the generator behind tool inputs and
structured output."""
from __future__ import annotations

_MAX_SCHEMA_DEPTH = 16


def _resolve(ref: str, root: dict) -> object:
    node: object = root
    for part in ref.lstrip("#").strip("/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def example_from_schema(schema: object, root: dict | None = None, key: str = "", depth: int = 0) -> object:
    """A small value that satisfies a JSON schema (the generator for tool inputs and structured output)."""
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return "x"
    root = schema if root is None else root
    if isinstance(schema.get("$ref"), str):
        return example_from_schema(_resolve(schema["$ref"], root), root, key, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return example_from_schema(schema[combinator][0], root, key, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: example_from_schema(sub, root, name, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        item = schema.get("items")
        return [example_from_schema(item, root, key, depth + 1) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    word = "Paris" if "city" in key.lower() or "location" in key.lower() else "x"
    return word.ljust(schema.get("minLength", 0), "x")
