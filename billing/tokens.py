"""One value type for a request's token counts, from the upstream's usage report through
the cost formula, request records, roll-ups, statements and metrics.

Anthropic's uncached input excludes cache reads and writes, so the four input classes are
disjoint and billing sums them without counting any twice (SPEC §5)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Self

# The classes' names (metrics labels, the API's tokens_<kind>), in TokenCounts' order.
KINDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
# The column that holds each class on RequestRecord and UsageRollup (and in statements).
COLUMNS = tuple(f"{kind}_tokens" for kind in KINDS)
KIND_COLUMNS = tuple(zip(KINDS, COLUMNS, strict=True))


@dataclass(frozen=True, slots=True)
class TokenCounts:
    input_tokens: int = 0      # uncached input
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    output_tokens: int = 0     # thinking included

    @property
    def prompt_tokens(self) -> int:
        """All input, cached or not (OpenAI's prompt_tokens, Anthropic's sum of the four)."""
        return self.input_tokens + self.cache_write_5m + self.cache_write_1h + self.cache_read

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def with_output(self, output_tokens: int) -> Self:
        return replace(self, output_tokens=output_tokens)

    def __iter__(self) -> Iterator[int]:
        """The counts in KINDS order."""
        return iter(self._values())

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(*(a + b for a, b in zip(self._values(), other._values(), strict=True)))

    def columns(self) -> dict[str, int]:
        """The record/roll-up columns of these counts."""
        return dict(zip(COLUMNS, self._values(), strict=True))

    @classmethod
    def from_columns(cls, row: Any) -> TokenCounts:
        """From a record, a roll-up or an aggregate row (missing or NULL sums count 0)."""
        get = row.get if isinstance(row, Mapping) else lambda column: getattr(row, column, 0)
        return cls(*(get(column) or 0 for column in COLUMNS))

    def _values(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))
