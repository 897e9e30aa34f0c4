"""Stored Responses API answers, the gateway's side: the row a successful call stores (with
``store``; the record writer commits it with the call's record), reading a conversation
for ``previous_response_id``, and ``GET``/``DELETE /responses/{id}`` and
``GET /responses/{id}/input_items``. Everything is
scoped to the caller's team: another team's id is a 404, as an unknown one is."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from billing import stored_responses
from billing.models import StoredResponse

from . import db
from .api import api_endpoint, json_response
from .errors import GatewayError, invalid
from .translation.responses_output import without_encrypted
from .translation.responses_request import ENCRYPTED_REASONING


def row(call, response: dict, input_items: list[dict], previous_response_id: str | None) -> dict:
    """A finished response's ``StoredResponse`` fields (the record writer commits them with
    the call's record)."""
    return {
        "response_id": call.generation_id, "team_id": call.key.team_id, "api_key_id": call.key.id,
        "previous_response_id": previous_response_id or "", "input_items": input_items, "response": response,
        "created": call.created, "expires_at": call.created + timedelta(days=settings.RESPONSES_RETENTION_DAYS),
    }


async def conversation(team_id: int, response_id: str) -> list[dict]:
    """The items a continuation of ``response_id`` starts with (404/400 when it cannot be continued)."""
    if not settings.RESPONSES_STORE:
        raise invalid("previous_response_id cannot be used: response storage is turned off on this gateway "
                      "(RESPONSES_STORE=0); send the whole conversation as input.", "previous_response_id")
    try:
        items = await db.run(stored_responses.conversation, team_id, response_id)
    except stored_responses.BrokenConversation as exc:
        raise invalid(f"previous_response_id: the earlier response {exc.response_id!r} of this conversation was "
                      "deleted or has expired; send the whole conversation as input.", "previous_response_id",
                      code="previous_response_not_found") from None
    if items is None:
        raise GatewayError(404, f"Previous response with id {response_id[:100]!r} not found.",
                           param="previous_response_id", code="previous_response_not_found")
    return items


@api_endpoint("GET", "DELETE")
async def stored_response(request, key):
    """``/responses/{id}`` (GET, DELETE) and ``/responses/{id}/input_items`` (GET)."""
    tail = request.path.split("/responses/", 1)[1].strip("/")
    response_id, _, sub = tail.partition("/")
    if not response_id or sub not in ("", "input_items") or (sub and request.method != "GET"):
        raise GatewayError(404, f"Unknown endpoint: {request.method} {request.path}", code="unknown_url")
    if request.method == "DELETE":
        if not await db.run(stored_responses.delete_response, key.team_id, response_id):
            raise _not_found(response_id)
        return json_response({"id": response_id, "object": "response.deleted", "deleted": True})
    row = await db.run(stored_responses.get_response, key.team_id, response_id)
    if row is None:
        raise _not_found(response_id)
    if sub == "input_items":
        return json_response(_input_items(row, request.query))
    if request.query.get("stream", "").lower() == "true":
        raise invalid("stream=true (replaying a stored response as events) is not supported.", "stream",
                      code="unsupported_parameter")
    included = request.query.get("include") or request.query.get("include[]")
    return json_response(row.response if included == ENCRYPTED_REASONING else without_encrypted(row.response))


def _input_items(row: StoredResponse, query: dict) -> dict:
    raw_limit = query.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        raise invalid("limit must be an integer between 1 and 100.", "limit")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid("order must be 'asc' or 'desc'.", "order")
    items, has_more = stored_responses.input_items_page(row, after=query.get("after") or None,
                                                        limit=int(raw_limit), ascending=order == "asc")
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


def _not_found(response_id: str) -> GatewayError:
    hint = "" if settings.RESPONSES_STORE else " Response storage is turned off on this gateway."
    return GatewayError(404, f"Response with id {response_id[:100]!r} not found.{hint}", param="response_id",
                        code="response_not_found")
