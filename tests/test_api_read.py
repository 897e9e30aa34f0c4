"""GET /models, /models/{id}, /key, /generation: auth, shapes and team isolation."""
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from django.utils import timezone

from billing.services import charge_request
from tokenhub_portal.accounts.services import revoke_key

from .conftest import assert_openai_error

pytestmark = pytest.mark.django_db


def test_models_list_has_the_seed_table_with_pricing(api, make_key):
    key = make_key().plaintext
    r = api.get("/api/v1/models", key)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert len(by_id) == 10
    sonnet = by_id["claude-sonnet-4-6"]
    assert sonnet["pricing"]["input"] == "3" and sonnet["pricing"]["output"] == "15"
    assert sonnet["pricing"]["cache_read"] == "0.3"
    assert sonnet["pricing"]["cache_write_5m"] == "3.75" and sonnet["pricing"]["cache_write_1h"] == "6"
    assert sonnet["recommended"] is True and "anthropic/claude-sonnet-4-6" in sonnet["aliases"]
    haiku35 = by_id["claude-3-5-haiku-latest"]
    assert haiku35["pricing"]["input"] == "0.8" and haiku35["upstream_model"] == "claude-3-5-haiku-20241022"
    assert haiku35["lifecycle"] == "retired" and haiku35["successor"] == "claude-haiku-4-5"
    assert by_id["claude-4-sonnet"]["upstream_model"] == "claude-sonnet-4-20250514"
    assert by_id["claude-4-opus"]["pricing"]["output"] == "75"


def test_model_detail_resolves_aliases_and_v1_mount(api, make_key):
    key = make_key().plaintext
    r = api.get("/v1/models/anthropic/claude-haiku-4-5", key)
    assert r.status_code == 200 and r.json()["id"] == "claude-haiku-4-5"
    err = assert_openai_error(api.get("/api/v1/models/gpt-4o", key), 404, "model_not_found")
    assert "gpt-4o" in err["message"]


def test_model_allow_list_hides_other_models(api, make_key):
    key = make_key(models=["claude-haiku-4-5"]).plaintext
    assert [m["id"] for m in api.get("/api/v1/models", key).json()["data"]] == ["claude-haiku-4-5"]
    assert_openai_error(api.get("/api/v1/models/claude-sonnet-4-6", key), 404, "model_not_found")


def test_key_endpoint_accepts_bearer_and_x_api_key(api, make_key):
    issued = make_key(monthly_limit=Decimal("5.00"), rpm=60, tpm=100000)
    by_bearer = api.get("/api/v1/key", issued.plaintext).json()["data"]
    by_header = api.get("/api/v1/key", headers={"x-api-key": issued.plaintext}).json()["data"]
    assert by_bearer == by_header
    assert by_bearer["team"] == "acme" and by_bearer["limit"] == "5" and by_bearer["usage"] == "0"
    assert by_bearer["rate_limit"] == {"requests_per_minute": 60, "tokens_per_minute": 100000}
    assert issued.plaintext not in orjson.dumps(by_bearer).decode()


def test_key_usage_reflects_this_months_charges(api, make_key, make_record):
    issued = make_key(monthly_limit=Decimal("1"))
    charge_request(make_record(issued, input_tokens=100_000, output_tokens=10_000).pk)  # 0.3 + 0.15
    data = api.get("/api/v1/key", issued.plaintext).json()["data"]
    assert data["usage"] == "0.45" and data["limit_remaining"] == "0.55"


@pytest.mark.parametrize("headers, code", [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer sk-openai-key"}, "invalid_api_key"),
    ({"Authorization": "Bearer th-" + "x" * 43}, "invalid_api_key"),
])
def test_bad_credentials_get_401_in_openai_shape(api, headers, code):
    assert_openai_error(api.get("/api/v1/models", headers=headers), 401, code)


def test_revoked_and_expired_keys_are_refused(api, make_key):
    revoked = make_key()
    assert api.get("/api/v1/key", revoked.plaintext).status_code == 200  # now cached
    revoke_key(revoked.api_key)
    assert_openai_error(api.get("/api/v1/key", revoked.plaintext), 401, "revoked_api_key")
    expired = make_key(expires_at=timezone.now() - timedelta(seconds=1))
    assert_openai_error(api.get("/api/v1/key", expired.plaintext), 401, "expired_api_key")


def test_generation_shows_own_request_with_exact_cost(api, make_key, make_record):
    issued = make_key()
    record = make_record(issued, input_tokens=1000, output_tokens=500, cache_read_tokens=2000,
                         cache_write_5m_tokens=100, latency_ms=120, ttft_ms=40)
    pending = api.get(f"/api/v1/generation?id={record.generation_id}", issued.plaintext).json()["data"]
    assert pending["total_cost"] is None and pending["cost_status"] == "pending"
    charge_request(record.pk)
    data = api.get(f"/api/v1/generation?id={record.generation_id}", issued.plaintext).json()["data"]
    # 1000×3 + 500×15 + 2000×0.3 + 100×3.75 = 11475 µ$
    assert data["total_cost"] == "0.011475" and data["cost_status"] == "final"
    assert data["tokens_prompt"] == 3100 and data["tokens_cache_read"] == 2000
    assert data["latency_ms"] == 120 and data["ttft_ms"] == 40 and data["price_version"]["id"]


def test_other_teams_generation_is_404(api, make_key, make_record):
    team_a = make_key("team-a")
    team_b = make_key("team-b")
    record = make_record(team_a, input_tokens=1, output_tokens=1)
    assert api.get(f"/api/v1/generation?id={record.generation_id}", team_a.plaintext).status_code == 200
    assert_openai_error(api.get(f"/api/v1/generation?id={record.generation_id}", team_b.plaintext), 404,
                        "generation_not_found")


def test_generation_requires_id(api, make_key):
    assert_openai_error(api.get("/api/v1/generation", make_key().plaintext), 400, "missing_required_parameter")


def test_unknown_endpoint_and_wrong_method_use_openai_shape(api, make_key):
    key = make_key().plaintext
    assert_openai_error(api.get("/api/v1/nothing-here", key), 404, "unknown_url")
    assert_openai_error(api.post("/api/v1/models", key, json={}), 405, "method_not_allowed")


def test_healthz_needs_no_database_and_readyz_checks_it(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
