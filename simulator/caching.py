"""Prompt caching as the real API does it, statefully.

``cache_control`` is validated like the real API (``{"type": "ephemeral", "ttl"?: "5m" |
"1h"}``, at most 4 breakpoints, no 1h breakpoint after a 5m one in the order tools →
system → messages). The cache is per process: the key of a breakpoint is a hash of the
model and of every block up to it (``cache_control`` itself excluded; the thinking
setting counts from the first message on, so changing it invalidates cached messages but
not tools and system, as in the real API), kept for its TTL and refreshed on each hit.
A request reads the longest cached prefix found at one of its breakpoints or up to 20
blocks before one (the real API's lookback), and writes the rest up to each later
breakpoint, split into 5m and 1h writes by that breakpoint's TTL. Prefixes shorter than
the minimum (``SIM_CACHE_MIN_TOKENS``, default 1, or the ``cache_min=N`` marker; the real
API needs 1024+) are not cached.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import orjson

from .errors import bad

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
MIN_TOKENS = int(os.environ.get("SIM_CACHE_MIN_TOKENS", "1"))
_MAX_ENTRIES = 100_000
_ORDER_NOTE = "Note that blocks are processed in the following order: `tools`, `system`, `messages`."
_store: dict[bytes, tuple[float, str]] = {}  # prefix digest -> (expires at, ttl)


@dataclass(slots=True)
class Unit:
    """One block of the prompt in cache order, with the prompt tokens up to and including it."""

    role: str  # "tools", "system", "user" or "assistant"
    message: int  # message index; -1 for tools and system
    block: object
    tokens: int


@dataclass(slots=True)
class Breakpoint:
    unit: int  # index into the units
    ttl: str
    where: str  # its cache_control, for error messages, e.g. "messages.0.content.4.cache_control"


@dataclass(slots=True)
class CacheUsage:
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0


NO_CACHE = CacheUsage()  # shared: callers only read it


def parse_cache_control(value: object, path: str, *, allow_scope: bool) -> str | None:
    """The TTL of a ``cache_control`` (None when absent or null); 400s name the field like
    the real API. ``scope`` is accepted only with the prompt-caching-scope beta."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad(f"{path}.cache_control: Input should be a valid dictionary")
    kind = value.get("type")
    if kind is None:
        raise bad(f"{path}.cache_control: Unable to extract tag using discriminator 'type'")
    if kind != "ephemeral":
        raise bad(f"{path}.cache_control: Input tag {kind!r} found using 'type' does not match any of the "
                  "expected tags: 'ephemeral'")
    for key in value:
        if key not in ("type", "ttl") and not (key == "scope" and allow_scope):
            raise bad(f"{path}.cache_control.ephemeral.{key}: Extra inputs are not permitted")
    ttl = value.get("ttl", "5m")
    if not isinstance(ttl, str) or ttl not in TTL_SECONDS:
        raise bad(f"{path}.cache_control.ephemeral.ttl: Input should be '5m' or '1h'")
    return ttl


def check_breakpoints(breakpoints: list[Breakpoint]) -> None:
    if len(breakpoints) > MAX_BREAKPOINTS:
        raise bad(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(breakpoints)}.")
    seen_5m = False
    for point in sorted(breakpoints, key=lambda point: point.unit):
        if point.ttl == "1h" and seen_5m:
            raise bad(f"{point.where}.ttl: a ttl='1h' cache_control block must not come after a "
                      f"ttl='5m' cache_control block. {_ORDER_NOTE}")
        seen_5m = seen_5m or point.ttl == "5m"


def _canonical(block: object) -> object:
    """The block as the cache sees it: without its ``cache_control`` (nor its children's)."""
    if not isinstance(block, dict) or "cache_control" not in block and block.get("type") != "tool_result":
        return block
    plain = {key: value for key, value in block.items() if key != "cache_control"}
    if isinstance(plain.get("content"), list):
        plain["content"] = [_canonical(child) for child in plain["content"]]
    return plain


def _prefix_digests(model: str, thinking: object, units: list[Unit]) -> list[bytes]:
    running = hashlib.blake2b(model.encode(), digest_size=16)
    digests = []
    in_messages = False
    for unit in units:
        if unit.message >= 0 and not in_messages:  # the thinking settings are part of the messages' prefix
            running.update(orjson.dumps(thinking))
            in_messages = True
        running.update(orjson.dumps([unit.role, unit.message, _canonical(unit.block)]))
        digests.append(running.copy().digest())
    return digests


def _alive(digest: bytes, now: float) -> bool:
    entry = _store.get(digest)
    if entry is None:
        return False
    if entry[0] <= now:
        del _store[digest]
        return False
    return True


def _keep(digest: bytes, ttl: str, now: float) -> None:
    _store.pop(digest, None)  # re-insert: the dict's order is the eviction order
    if len(_store) >= _MAX_ENTRIES:
        del _store[next(iter(_store))]
    _store[digest] = (now + TTL_SECONDS[ttl], ttl)


def account(model: str, thinking: object, units: list[Unit], breakpoints: list[Breakpoint],
            min_tokens: int) -> CacheUsage:
    """Read the longest cached prefix, write the rest up to each later breakpoint.
    ``thinking`` is the request's thinking setting: changing it invalidates the cached
    messages (tools and system stay cached), as in the real API."""
    if not breakpoints:
        return NO_CACHE
    usage = CacheUsage()
    now = time.monotonic()
    points = sorted(breakpoints, key=lambda point: point.unit)
    digests = _prefix_digests(model, thinking, units[: points[-1].unit + 1])
    hit = -1
    for point in points:
        for position in range(point.unit, max(point.unit - LOOKBACK_BLOCKS, hit + 1) - 1, -1):
            if _alive(digests[position], now):
                hit = position
                break
    covered = 0
    if hit >= 0:
        covered = usage.read = units[hit].tokens
        _keep(digests[hit], _store[digests[hit]][1], now)  # refreshed on each hit
    for point in points:
        digest = digests[point.unit]
        if point.unit <= hit:
            if point.unit < hit and _alive(digest, now):
                _keep(digest, _store[digest][1], now)
            continue
        tokens = units[point.unit].tokens
        if tokens < min_tokens or tokens <= covered:
            continue
        if point.ttl == "1h":
            usage.write_1h += tokens - covered
        else:
            usage.write_5m += tokens - covered
        covered = tokens
        _keep(digest, point.ttl, now)
    return usage


def clear() -> None:
    _store.clear()
