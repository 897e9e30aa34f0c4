"""Stored Responses API answers in the billing layer: team scoping, conversations for
previous_response_id, retention and the periodic sweep."""
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from billing import stored_responses
from billing.models import StoredResponse
from billing.tasks import delete_expired_responses
from tokenhub_portal.accounts.models import ApiKey

from .conftest import assert_openai_error


@pytest.fixture
def store(make_key):
    def make(response_id, issued, *, previous="", age_days=0, retention_days=30, text="answer"):
        created = timezone.now() - timedelta(days=age_days)
        key = issued.api_key
        return StoredResponse.objects.create(
            response_id=response_id, team=key.team, api_key=key, previous_response_id=previous,
            input_items=[{"id": f"msg_in_{response_id}", "type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": f"question {response_id}"}]}],
            response={"id": response_id, "object": "response", "output": [
                {"id": f"msg_out_{response_id}", "type": "message", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": text, "annotations": []}]}]},
            created=created, expires_at=created + timedelta(days=retention_days))

    return make


def test_conversation_walks_the_chain_oldest_first(store, make_key):
    issued = make_key("alpha")
    store("resp_1", issued)
    store("resp_2", issued, previous="resp_1")
    store("resp_3", issued, previous="resp_2")
    items = stored_responses.conversation(issued.api_key.team_id, "resp_3")
    assert [item["id"] for item in items] == ["msg_in_resp_1", "msg_out_resp_1", "msg_in_resp_2", "msg_out_resp_2",
                                              "msg_in_resp_3", "msg_out_resp_3"]


def test_other_teams_expired_and_unknown_responses_are_not_found(store, make_key):
    alpha, beta = make_key("alpha"), make_key("beta")
    store("resp_a", alpha)
    store("resp_old", alpha, age_days=31)
    assert stored_responses.conversation(beta.api_key.team_id, "resp_a") is None
    assert stored_responses.get_response(beta.api_key.team_id, "resp_a") is None
    assert not stored_responses.delete_response(beta.api_key.team_id, "resp_a")
    assert stored_responses.get_response(alpha.api_key.team_id, "resp_old") is None
    assert stored_responses.conversation(alpha.api_key.team_id, "resp_nope") is None
    assert stored_responses.get_response(alpha.api_key.team_id, "resp_a") is not None


def test_a_chain_with_a_deleted_link_is_broken_not_silently_shortened(store, make_key):
    issued = make_key("alpha")
    store("resp_1", issued)
    store("resp_2", issued, previous="resp_1")
    assert stored_responses.delete_response(issued.api_key.team_id, "resp_1")
    with pytest.raises(stored_responses.BrokenConversation) as broken:
        stored_responses.conversation(issued.api_key.team_id, "resp_2")
    assert broken.value.response_id == "resp_1"


def test_input_items_pages(store, make_key):
    issued = make_key("alpha")
    row = store("resp_1", issued)
    row.input_items = [{"id": f"i{n}", "type": "message"} for n in range(5)]
    newest_first, more = stored_responses.input_items_page(row, after=None, limit=2, ascending=False)
    assert [i["id"] for i in newest_first] == ["i4", "i3"] and more
    rest, more = stored_responses.input_items_page(row, after="i3", limit=10, ascending=False)
    assert [i["id"] for i in rest] == ["i2", "i1", "i0"] and not more


def test_the_periodic_task_deletes_expired_responses_only(store, make_key):
    issued = make_key("alpha")
    store("resp_fresh", issued, age_days=29)
    store("resp_expired", issued, age_days=31)
    store("resp_short", issued, age_days=2, retention_days=1)
    assert delete_expired_responses() == 2
    assert list(StoredResponse.objects.values_list("response_id", flat=True)) == ["resp_fresh"]
    schedule = settings.CELERY_BEAT_SCHEDULE["delete-expired-responses"]
    assert schedule["task"] == "billing.tasks.delete_expired_responses"
    assert settings.RESPONSES_RETENTION_DAYS == 30 and settings.RESPONSES_STORE is True


def test_management_keys_neither_call_nor_read_responses(api, make_key, store):
    manager = make_key("alpha", kind=ApiKey.Kind.MANAGEMENT).plaintext
    store("resp_m", make_key("alpha"))
    body = {"model": "claude-sonnet-4-6", "input": "hi"}
    assert_openai_error(api.post("/v1/responses", manager, json=body), 403, "management_key_not_allowed")
    for path in ("/v1/responses/resp_m", "/v1/responses/resp_m/input_items"):
        assert_openai_error(api.get(path, manager), 403, "management_key_not_allowed")
    assert_openai_error(api.request("DELETE", "/v1/responses/resp_m", manager), 403, "management_key_not_allowed")
    assert StoredResponse.objects.filter(response_id="resp_m").exists()
