"""Per-request behaviour markers: ``[[sim:KEY=VALUE,KEY2]]`` in the last user message or the
``x-sim`` header (the table is in the ``simulator.server`` docstring)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ERRORS, SimError

STOP_REASONS = frozenset({"end_turn", "max_tokens", "stop_sequence", "pause_turn", "refusal"})
MARKER = re.compile(r"\[\[sim:([^\]]*)\]\]")
_MAX_TRACKED_ATTEMPTS = 10_000
_attempts: dict[int, int] = {}  # fail_first counters, keyed by hash(body, x-sim)


def _flag(value: str) -> bool:
    if value not in ("", "1", "true"):
        raise ValueError(value)
    return True


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _status(value: str) -> int:
    status = int(value)
    if status not in ERRORS:
        raise ValueError(value)
    return status


def _one_of(allowed: frozenset[str]):
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(value)
        return value

    return parse


_OPTION_PARSERS = {
    "words": _positive,
    "reply": _one_of(frozenset({"json"})),
    "tool": _flag,
    "parallel_tools": _flag,
    "error": _status,
    "fail_first": _count,
    "midstream_error": _flag,
    "drop": _flag,
    "delay_ms": _count,
    "chunk_delay_ms": _count,
    "cache_read": _count,
    "cache_write_5m": _count,
    "cache_write_1h": _count,
    "stop": _one_of(STOP_REASONS),
    "thinking_words": _positive,
    "redacted_thinking": _flag,
    "cache_min": _count,
    "strict_betas": _flag,
}


@dataclass(slots=True)
class Sim:
    """Behaviour options of one request (see the ``simulator.server`` docstring)."""

    words: int | None = None
    reply: str | None = None
    tool: bool = False
    parallel_tools: bool = False
    error: int | None = None
    fail_first: int | None = None
    midstream_error: bool = False
    drop: bool = False
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    stop: str | None = None
    thinking_words: int | None = None
    redacted_thinking: bool = False
    cache_min: int | None = None
    strict_betas: bool = False

    def apply(self, spec: str) -> None:
        for item in spec.split(","):
            key, _, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not key:
                continue
            parse = _OPTION_PARSERS.get(key)
            if parse is None:
                raise SimError(400, f"x-sim: unknown option {key!r}")
            try:
                setattr(self, key, parse(value))
            except ValueError:
                raise SimError(400, f"x-sim: bad value {value!r} for {key!r}") from None


def options(header: bytes | None, last_user_text: str) -> Sim:
    """The header's options, then the markers' (a marker wins on conflicts)."""
    sim = Sim()
    if header:
        sim.apply(header.decode("latin-1"))
    if "[[sim:" in last_user_text:
        for match in MARKER.finditer(last_user_text):
            sim.apply(match.group(1))
    return sim


def arm_failures(sim: Sim, key: int) -> None:
    """fail_first: the failure options apply to the first N attempts of an identical request only."""
    if sim.fail_first is None:
        return
    if key not in _attempts and len(_attempts) >= _MAX_TRACKED_ATTEMPTS:
        del _attempts[next(iter(_attempts))]
    attempt = _attempts.get(key, 0) + 1
    _attempts[key] = attempt
    if attempt > sim.fail_first:
        sim.error, sim.midstream_error, sim.drop = None, False, False
    elif not (sim.error or sim.midstream_error or sim.drop):
        sim.error = 529
