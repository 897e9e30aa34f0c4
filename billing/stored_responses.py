"""Stored Responses API answers: read, continue, list, delete — always within one team —
and the retention sweep. The gateway writes the rows (batched, off its event loop)."""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from .models import StoredResponse

MAX_CONVERSATION_LENGTH = 1000  # responses one previous_response_id chain may go back


def live(team_id: int):
    """A team's stored responses that have not expired."""
    return StoredResponse.objects.filter(team_id=team_id, expires_at__gt=timezone.now())


def get_response(team_id: int, response_id: str) -> StoredResponse | None:
    return live(team_id).filter(response_id=response_id).first()


def delete_response(team_id: int, response_id: str) -> bool:
    deleted, _ = live(team_id).filter(response_id=response_id).delete()
    return bool(deleted)


class BrokenConversation(Exception):
    """An earlier response of the chain was deleted or has expired."""

    def __init__(self, response_id: str) -> None:
        super().__init__(response_id)
        self.response_id = response_id


def conversation(team_id: int, response_id: str) -> list[dict] | None:
    """The items a response continued from ``response_id`` starts with: for each response of
    the chain, oldest first, its input items and then its output. None if ``response_id``
    is not a live stored response of the team; ``BrokenConversation`` if an earlier link is
    gone. (``instructions`` are not carried over, as on OpenAI.)"""
    chain: list[tuple[list, list]] = []
    current: str | None = response_id
    rows = live(team_id).values_list("previous_response_id", "input_items", "response")
    while current and len(chain) < MAX_CONVERSATION_LENGTH:
        row = rows.filter(response_id=current).first()
        if row is None:
            if not chain:
                return None
            raise BrokenConversation(current)
        previous, input_items, response = row
        chain.append((input_items or [], (response or {}).get("output") or []))
        current = previous or None
    items: list[dict] = []
    for input_items, output in reversed(chain):
        items.extend(input_items)
        items.extend(output)
    return items


def input_items_page(row: StoredResponse, *, after: str | None, limit: int, ascending: bool) -> tuple[list[dict], bool]:
    """One page of a response's input items (OpenAI's cursor list: ``after`` an item id)."""
    items = list(row.input_items or [])
    if not ascending:
        items.reverse()
    if after:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    return items[:limit], len(items) > limit


def delete_expired(now: datetime | None = None, batch: int = 5000) -> int:
    """Delete stored responses past their retention, in batches (short transactions)."""
    now = now or timezone.now()
    total = 0
    while True:
        ids = list(StoredResponse.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        total += StoredResponse.objects.filter(pk__in=ids).delete()[0]
