"""The management API (SPEC §8) through the one ASGI app: routing between the lean router
and Django REST framework, management/operator keys and their scope, keys CRUD with
OpenRouter's shapes, team isolation (another team's ids are 404), idempotent writes,
OpenAI-shaped errors, money as exact decimal strings."""
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError
from django.utils import timezone

from billing.models import CreditEntry
from tokenhub_portal.accounts.keys import hash_key
from tokenhub_portal.accounts.models import ApiKey, Membership, Team
from tokenhub_portal.web.models import IdempotentRequest
from tokenhub_portal.web.services import issue_key

from .conftest import assert_openai_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_user("ada", "ada@example.com", "pw-ada-12345")


@pytest.fixture
def mkey(db, admin_user):
    """A management key of team acme, created by one of its owners."""
    team, _ = Team.objects.get_or_create(name="acme")
    Membership.objects.create(team=team, user=admin_user, role=Membership.Role.OWNER)
    return issue_key(team, name="ci", kind=ApiKey.Kind.MANAGEMENT, created_by=admin_user)


@pytest.fixture
def other_mkey(db):
    team, _ = Team.objects.get_or_create(name="globex")
    return issue_key(team, name="globex-ci", kind=ApiKey.Kind.MANAGEMENT)


@pytest.fixture
def operator_key(db):
    return issue_key(None, name="ops", kind=ApiKey.Kind.MANAGEMENT)


def create(api, key, **body):
    return api.post("/api/v1/keys", key, json={"name": "pipeline", **body})


# --- routing and scope ------------------------------------------------------------------------

def test_management_paths_go_to_drf_and_the_rest_stays_on_the_lean_router(api, mkey, make_key):
    assert_openai_error(api.get("/api/v1/keys"), 401, "not_authenticated")
    assert api.get("/api/v1/keys", mkey.plaintext).status_code == 200
    assert api.get("/v1/keys", mkey.plaintext).status_code == 200          # both mounts
    inference = make_key().plaintext
    r = api.get("/api/v1/key", inference)                                   # singular: the lean router
    assert r.status_code == 200 and r.json()["data"]["scope"] == "inference"
    assert_openai_error(api.get("/api/v1/keysx", mkey.plaintext), 404, "unknown_url")
    assert_openai_error(api.get("/api/v1/keys/a/b", mkey.plaintext), 404, "unknown_url")
    assert api.get("/api/v1/openapi.json").json()["openapi"].startswith("3.")


def test_a_management_key_cannot_call_models(api, mkey, operator_key):
    body = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}
    for key in (mkey.plaintext, operator_key.plaintext):
        err = assert_openai_error(api.post("/api/v1/chat/completions", key, json=body), 403,
                                  "management_key_not_allowed")
        assert "cannot call models" in err["message"]
    anthropic = {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    for path in ("/v1/messages", "/v1/messages/count_tokens"):  # the Anthropic front door, its error shape
        r = api.post(path, headers={"x-api-key": mkey.plaintext, "anthropic-version": "2023-06-01"}, json=anthropic)
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error", r.text
    # …but it may read: the calling key, the model table
    assert api.get("/api/v1/key", mkey.plaintext).json()["data"]["scope"] == "management"
    assert api.get("/api/v1/key", operator_key.plaintext).json()["data"]["team"] is None
    assert api.get("/v1/models", mkey.plaintext).status_code == 200


def test_an_inference_key_cannot_manage(api, make_key):
    key = make_key().plaintext
    assert_openai_error(api.get("/api/v1/keys", key), 403, "management_key_required")
    assert_openai_error(api.get("/api/v1/team", key), 403, "management_key_required")


def test_bad_keys_get_401_in_the_openai_shape(api, mkey):
    assert_openai_error(api.get("/api/v1/keys", "sk-nope"), 401, "invalid_api_key")
    assert_openai_error(api.get("/api/v1/keys", "th-" + "x" * 43), 401, "invalid_api_key")
    ApiKey.objects.filter(pk=mkey.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_openai_error(api.get("/api/v1/keys", mkey.plaintext), 401, "expired_api_key")
    ApiKey.objects.filter(pk=mkey.api_key.pk).update(expires_at=None, disabled=True)
    assert_openai_error(api.get("/api/v1/keys", mkey.plaintext), 401, "disabled_api_key")
    assert_openai_error(api.get("/api/v1/keys", headers={"x-api-key": mkey.plaintext}), 401, "disabled_api_key")


# --- keys -------------------------------------------------------------------------------------

def test_create_returns_the_secret_once_and_an_openrouter_key_object(api, mkey):
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    r = create(api, mkey.plaintext, limit="12.50", limit_reset="daily", expires_at=expires.isoformat(),
               models=["anthropic/claude-haiku-4-5"], rpm=60, tpm=10000, metadata={"pipeline": "deploy"})
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    secret, data = body["key"], body["data"]
    assert secret.startswith("th-") and len(secret) >= 43
    stored = ApiKey.objects.get(key_hash=data["hash"])
    assert stored.team.name == "acme" and stored.kind == "inference" and stored.created_by.username == "ada"
    assert data == {
        "hash": stored.key_hash, "name": "pipeline", "label": stored.prefix + "…", "scope": "inference",
        "team": stored.team_id, "disabled": False, "limit": "12.5", "limit_reset": "daily",
        "limit_remaining": "12.5", "usage": "0", "usage_daily": "0", "usage_weekly": "0", "usage_monthly": "0",
        "rpm": 60, "tpm": 10000, "models": ["claude-haiku-4-5"], "metadata": {"pipeline": "deploy"},
        "created_at": data["created_at"], "updated_at": data["updated_at"],
        "expires_at": expires.isoformat().replace("+00:00", "Z"), "last_used_at": None, "creator": "ada",
    }
    shown = api.get(f"/api/v1/keys/{data['hash']}", mkey.plaintext).json()["data"]
    assert shown == data and secret not in api.get("/api/v1/keys", mkey.plaintext).text


def test_list_get_patch_delete(api, mkey):
    made = [create(api, mkey.plaintext, name=f"k{i}").json()["data"]["hash"] for i in range(3)]
    listed = api.get("/api/v1/keys", mkey.plaintext, params={"limit": 2}).json()
    assert listed["total"] == 4 and len(listed["data"]) == 2  # three new keys and the management key
    assert listed["data"][0]["hash"] == made[-1]  # newest first
    r = api.patch(f"/api/v1/keys/{made[0]}", mkey.plaintext,
                  json={"disabled": True, "limit": "5", "limit_reset": "weekly", "name": "renamed", "rpm": None})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert (data["disabled"], data["limit"], data["limit_reset"], data["name"]) == (True, "5", "weekly", "renamed")
    hashes = [k["hash"] for k in api.get("/api/v1/keys", mkey.plaintext).json()["data"]]
    assert made[0] not in hashes                                    # disabled keys are hidden…
    with_disabled = api.get("/api/v1/keys", mkey.plaintext, params={"include_disabled": "true"}).json()["data"]
    assert made[0] in [k["hash"] for k in with_disabled]           # …unless asked for
    r = api.delete(f"/api/v1/keys/{made[1]}", mkey.plaintext)
    assert r.status_code == 200 and r.json() == {"deleted": True, "hash": made[1]}
    assert ApiKey.objects.get(key_hash=made[1]).revoked_at is not None  # records keep their key
    assert_openai_error(api.get(f"/api/v1/keys/{made[1]}", mkey.plaintext), 404, "not_found")
    assert_openai_error(api.patch(f"/api/v1/keys/{made[1]}", mkey.plaintext, json={"name": "x"}), 404)


def test_validation_errors_name_the_field(api, mkey):
    cases = [
        ({"limit": "1.005"}, "limit"), ({"limit": "-1"}, "limit"), ({"limit": "NaN"}, "limit"),
        ({"limit_reset": "hourly"}, "limit_reset"), ({"rpm": 0}, "rpm"), ({"tpm": "many"}, "tpm"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"), ({"expires_at": "soon"}, "expires_at"),
        ({"models": ["gpt-4o"]}, "models"), ({"models": "claude-haiku-4-5"}, "models"),
        ({"metadata": {"k": 1}}, "metadata.k"), ({"metadata": {"": "x"}}, "metadata"),
        ({"name": "x" * 101}, "name"), ({"name": "nul\u0000"}, "name"), ({"colour": "red"}, "colour"),
        ({"team": 999999}, None),
    ]
    for body, param in cases:
        r = create(api, mkey.plaintext, **body)
        err = assert_openai_error(r, 404 if "team" in body else 400)
        assert err["param"] == param, (body, err)
        if param:
            assert param.split(".")[0] in err["message"] or param == "models", err
    err = assert_openai_error(api.post("/api/v1/keys", mkey.plaintext, content=b"{nope",
                                       headers={"content-type": "application/json"}), 400)
    assert "JSON" in err["message"]
    assert_openai_error(api.post("/api/v1/keys", mkey.plaintext, json=[1, 2]), 400)
    assert_openai_error(api.request("PUT", "/api/v1/keys", mkey.plaintext, json={}), 405)
    assert ApiKey.objects.count() == 1  # nothing half-made


def test_another_teams_ids_are_404_everywhere(api, mkey, other_mkey, make_key):
    theirs = make_key("globex").api_key
    mine = make_key("acme").api_key
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"name": "x"}} if method == "patch" else {}
        assert_openai_error(getattr(api, method)(f"/api/v1/keys/{theirs.key_hash}", mkey.plaintext, **kwargs), 404)
    listed = {k["hash"] for k in api.get("/api/v1/keys", mkey.plaintext).json()["data"]}
    assert mine.key_hash in listed and theirs.key_hash not in listed and other_mkey.api_key.key_hash not in listed
    globex = theirs.team_id
    for path in ("/api/v1/keys", "/api/v1/team", "/api/v1/requests", "/api/v1/usage", "/api/v1/statements/2026-01"):
        assert_openai_error(api.get(path, mkey.plaintext, params={"team": globex}), 404)
    assert_openai_error(create(api, mkey.plaintext, team=globex), 404)
    for path in ("/api/v1/teams", f"/api/v1/teams/{globex}"):
        assert_openai_error(api.get(path, mkey.plaintext), 403, "operator_required")
    assert_openai_error(api.post(f"/api/v1/teams/{globex}/credits", mkey.plaintext, json={"amount": "5"}), 403)
    theirs.refresh_from_db()
    assert theirs.revoked_at is None and theirs.name == "test"


def test_operator_key_acts_on_every_team(api, operator_key, mkey, other_mkey):
    globex = other_mkey.api_key.team
    assert_openai_error(create(api, operator_key.plaintext), 400, "missing_required_parameter")
    r = create(api, operator_key.plaintext, team=globex.pk)
    assert r.status_code == 201 and r.json()["data"]["team"] == globex.pk
    every = {k["hash"] for k in api.get("/api/v1/keys", operator_key.plaintext).json()["data"]}
    assert {mkey.api_key.key_hash, other_mkey.api_key.key_hash, r.json()["data"]["hash"]} <= every
    only = api.get("/api/v1/keys", operator_key.plaintext, params={"team": globex.pk}).json()["data"]
    assert {k["team"] for k in only} == {globex.pk}
    assert api.get("/api/v1/team", operator_key.plaintext, params={"team": globex.pk}).json()["data"]["name"] == "globex"
    assert_openai_error(api.get("/api/v1/team", operator_key.plaintext, params={"team": 10**9}), 404)
    assert_openai_error(api.get("/api/v1/team", operator_key.plaintext, params={"team": "x"}), 400)


def test_idempotency_key_makes_a_retried_post_create_one_key(api, mkey):
    headers = {"Idempotency-Key": "ci-run-42"}
    first = api.post("/api/v1/keys", mkey.plaintext, json={"name": "once"}, headers=headers)
    again = api.post("/api/v1/keys", mkey.plaintext, json={"name": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert ApiKey.objects.filter(name="once").count() == 1
    row = IdempotentRequest.objects.get()
    assert first.json()["key"].encode() not in bytes(row.response) and "ci-run-42" not in row.key_digest
    err = assert_openai_error(api.post("/api/v1/keys", mkey.plaintext, json={"name": "other"}, headers=headers),
                              422, "idempotency_key_reused")
    assert err["param"] == "Idempotency-Key"
    # another actor's identical key is its own
    other = issue_key(mkey.api_key.team, name="ci2", kind=ApiKey.Kind.MANAGEMENT)
    assert api.post("/api/v1/keys", other.plaintext, json={"name": "once"}, headers=headers).status_code == 201
    assert ApiKey.objects.filter(name="once").count() == 2
    # validation failures are not stored: the corrected retry goes through
    headers = {"Idempotency-Key": "ci-run-43"}
    assert api.post("/api/v1/keys", mkey.plaintext, json={"name": "z", "rpm": 0}, headers=headers).status_code == 400
    assert api.post("/api/v1/keys", mkey.plaintext, json={"name": "z", "rpm": 0}, headers=headers).status_code == 400
    assert IdempotentRequest.objects.count() == 2


def test_idempotent_replays_expire(api, mkey, settings):
    headers = {"Idempotency-Key": "k1"}
    assert api.post("/api/v1/keys", mkey.plaintext, json={"name": "a"}, headers=headers).status_code == 201
    IdempotentRequest.objects.update(created=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_SECONDS + 1))
    assert api.post("/api/v1/keys", mkey.plaintext, json={"name": "a"}, headers=headers).status_code == 201
    assert ApiKey.objects.filter(name="a").count() == 2


# --- team and operators ---------------------------------------------------------------------------

def test_team_get_and_budget_patch(api, mkey, admin_user):
    data = api.get("/api/v1/team", mkey.plaintext).json()["data"]
    assert data["name"] == "acme" and data["budget"] is None and data["month_spend"] == "0"
    assert data["members"] == [{"username": "ada", "email": "ada@example.com", "role": "owner"}]
    r = api.patch("/api/v1/team", mkey.plaintext, json={"budget": "250.00"})
    assert r.status_code == 200 and r.json()["data"]["budget"] == "250"
    assert Team.objects.get(name="acme").monthly_budget == Decimal("250")
    assert_openai_error(api.patch("/api/v1/team", mkey.plaintext, json={"budget": "lots"}), 400)
    assert_openai_error(api.patch("/api/v1/team", mkey.plaintext, json={"name": "evil"}), 400, "unknown_field")


def test_operators_list_teams_set_budgets_and_add_credit(api, operator_key, mkey, other_mkey):
    r = api.get("/api/v1/teams", operator_key.plaintext)
    assert r.status_code == 200 and {t["name"] for t in r.json()["data"]} == {"acme", "globex"}
    globex = other_mkey.api_key.team
    r = api.patch(f"/api/v1/teams/{globex.pk}", operator_key.plaintext, json={"budget": "10"})
    assert r.status_code == 200 and r.json()["data"]["budget"] == "10"
    globex.refresh_from_db()
    assert globex.monthly_budget == Decimal("10")
    headers = {"Idempotency-Key": "topup-1"}
    for _ in range(2):
        r = api.post(f"/api/v1/teams/{globex.pk}/credits", operator_key.plaintext,
                     json={"amount": "0.0000000001", "note": "tiny"}, headers=headers)
        assert r.status_code == 201, r.text
    assert r.json()["data"]["amount"] == "0.0000000001" and r.json()["data"]["credit_balance"] == "0.0000000001"
    assert CreditEntry.objects.filter(team=globex).count() == 1
    assert_openai_error(api.post(f"/api/v1/teams/{globex.pk}/credits", operator_key.plaintext, json={"amount": 0}),
                        400)
    assert_openai_error(api.patch("/api/v1/teams/999999", operator_key.plaintext, json={"budget": "1"}), 404)
    assert api.get("/api/v1/teams", operator_key.plaintext, params={"search": "glob"}).json()["total"] == 1


def test_staff_session_is_an_operator_and_other_sessions_are_refused(api, client, admin_user):
    client.force_login(admin_user)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    assert_openai_error(api.get("/api/v1/teams", cookies=cookies), 403, "staff_required")
    admin_user.is_staff = True
    admin_user.save()
    assert api.get("/api/v1/teams", cookies=cookies).status_code == 200
    # writes with a session need the CSRF token
    assert_openai_error(api.patch("/api/v1/team", cookies=cookies, params={"team": 1}, json={}), 403, "csrf_failed")


# --- issue_key --------------------------------------------------------------------------------------

def test_issue_key_management_and_operator(capsys, seeded):
    call_command("issue_key", "--team", "acme", "--name", "ci", "--management")
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    key = ApiKey.objects.get(key_hash=hash_key(plaintext))
    assert key.kind == "management" and key.team.name == "acme" and key.name == "ci"
    call_command("issue_key", "--operator", "--name", "ops")
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    key = ApiKey.objects.get(key_hash=hash_key(plaintext))
    assert key.is_operator and key.team is None
    with pytest.raises(CommandError):
        call_command("issue_key", "--operator", "--team", "acme")
    with pytest.raises(CommandError):
        call_command("issue_key", "--team", "acme", "--management", "--rpm", "5")
    call_command("issue_key", "--team", "acme", "--monthly-limit", "3", "--limit-reset", "weekly")
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    assert ApiKey.objects.get(key_hash=hash_key(plaintext)).limit_reset == "weekly"


def test_an_operator_key_without_a_team_is_the_only_teamless_key(db):
    with pytest.raises(IntegrityError):
        ApiKey.objects.create(team=None, kind="inference", key_hash="x" * 64, prefix="th-x")


def test_docs_and_their_assets_are_served_by_tokenhub_itself(api, settings):
    assert not settings.DEBUG
    page = api.get("/api/docs/")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assets = set(re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', page.text))
    assets |= set(re.findall(r'"(/static/[^"]+\.(?:js|css|png))"', page.text))
    assert assets and all(a.startswith("/static/") for a in assets), assets  # no outside hosts
    for asset in assets:
        r = api.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', page.text))
    # the portal's and the admin's static files too (WhiteNoise, no front proxy)
    assert api.get("/static/admin/css/base.css").status_code == 200


def test_team_alert_thresholds_and_webhook_secret_once(api, mkey, settings):
    r = api.patch("/api/v1/team", mkey.plaintext, json={"alert_thresholds": [100, 50, 80]})
    assert r.status_code == 200 and r.json()["data"]["alert_thresholds"] == [50, 80, 100]
    assert r.json()["webhook_secret"] is None
    err = assert_openai_error(api.patch("/api/v1/team", mkey.plaintext, json={"webhook_url": "http://127.0.0.1/h"}), 400)
    assert err["param"] == "webhook_url" and "private" in err["message"]  # no SSRF into the operator's network
    for bad in ([0], [101], ["x"], "80"):
        assert assert_openai_error(api.patch("/api/v1/team", mkey.plaintext, json={"alert_thresholds": bad}),
                                   400)["param"].startswith("alert_thresholds")
    settings.WEBHOOK_ALLOW_PRIVATE = True
    r = api.patch("/api/v1/team", mkey.plaintext, json={"webhook_url": "http://127.0.0.1:9/hook"})
    secret = r.json()["webhook_secret"]
    assert r.status_code == 200 and secret.startswith("whsec_") and r.headers["cache-control"] == "no-store"
    assert Team.objects.get(name="acme").webhook_secret == secret
    shown = api.get("/api/v1/team", mkey.plaintext)
    assert shown.json()["data"]["webhook_url"] == "http://127.0.0.1:9/hook" and secret not in shown.text
    again = api.patch("/api/v1/team", mkey.plaintext, json={"webhook_url": "http://127.0.0.1:9/hook"})
    assert again.json()["webhook_secret"] is None  # the same URL keeps its secret
    assert api.patch("/api/v1/team", mkey.plaintext, json={"webhook_url": ""}).json()["data"]["webhook_url"] == ""


def test_operator_suspends_and_resumes_a_team(api, operator_key, make_key, django_capture_on_commit_callbacks):
    issued = make_key("acme")
    body = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}
    team = issued.api_key.team_id
    r = api.patch(f"/api/v1/teams/{team}", operator_key.plaintext, json={"suspended": True})
    assert r.status_code == 200 and r.json()["data"]["suspended"] is True
    assert_openai_error(api.post("/api/v1/chat/completions", issued.plaintext, json=body), 403, "team_suspended")
    assert api.get("/api/v1/teams", operator_key.plaintext).json()["data"][0]["suspended"] is True
    with django_capture_on_commit_callbacks(execute=True):  # as at the commit: every process drops its cache
        api.patch(f"/api/v1/teams/{team}", operator_key.plaintext, json={"suspended": False})
    assert api.get("/api/v1/key", issued.plaintext).status_code == 200
