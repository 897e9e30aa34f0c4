"""Changes reach running gateway processes within 2 seconds: revocation, suspension, limit
edits and credit top-ups, made by another process. Without Redis (`make run`) through the
change counter each gateway polls; with Redis through pub/sub."""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest
from redis.connection import parse_url

from billing.models import RequestRecord
from billing.services import add_credit
from proxy import changes as proxy_changes
from tokenhub_portal.accounts import changes
from tokenhub_portal.accounts.models import ApiKey, ConfigVersion, Team
from tokenhub_portal.accounts.services import revoke_key, set_team_suspended

from .conftest import _stop, start_gateway, wait_until

WITHIN = 2.0  # seconds, SPEC §6


@pytest.fixture(scope="module")
def gateway_without_redis(django_db_setup, simulator_url):
    """A gateway process as `make run` starts it: no REDIS_URL, a 30 s key cache."""
    url, proc = start_gateway(simulator_url, REDIS_URL="", KEY_CACHE_SECONDS="30")
    yield url
    _stop(proc)


@pytest.fixture(autouse=True)
def _pipeline_done(transactional_db):
    yield
    # The gateway prices its records in-process: let it finish before the tables are
    # flushed (a TRUNCATE racing its row locks deadlocks).
    wait_until(lambda: not RequestRecord.objects.filter(priced_at__isnull=True).exists(), timeout=30)


def seconds_until(predicate, limit: float = 10.0) -> float:
    """How long until `predicate()` holds (polled), from now; fails after `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {limit}s")


def get_key(url: str, key: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/key", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def chat(url: str, key: str) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})


def code(response: httpx.Response) -> str | None:
    return response.json()["error"]["code"] if response.status_code >= 400 else None


def test_revocation_reaches_a_gateway_without_redis_within_2s(seeded, gateway_without_redis, make_key):
    issued = make_key("changes-revoke")
    assert get_key(gateway_without_redis, issued.plaintext).status_code == 200  # now cached for 30 s
    revoke_key(issued.api_key)
    took = seconds_until(lambda: get_key(gateway_without_redis, issued.plaintext).status_code == 401)
    assert took < WITHIN
    assert code(get_key(gateway_without_redis, issued.plaintext)) == "revoked_api_key"


def test_suspension_and_resumption_reach_a_gateway_without_redis_within_2s(seeded, gateway_without_redis,
                                                                           make_key):
    issued = make_key("changes-suspend")
    team = Team.objects.get(name="changes-suspend")
    assert chat(gateway_without_redis, issued.plaintext).status_code == 200
    set_team_suspended(team, True)
    took = seconds_until(lambda: chat(gateway_without_redis, issued.plaintext).status_code == 403)
    assert took < WITHIN
    refused = chat(gateway_without_redis, issued.plaintext)
    assert code(refused) == "team_suspended" and set(refused.json()["error"]) == {"message", "type", "param", "code"}
    assert get_key(gateway_without_redis, issued.plaintext).status_code == 403  # every endpoint
    set_team_suspended(team, False)
    assert seconds_until(lambda: chat(gateway_without_redis, issued.plaintext).status_code == 200) < WITHIN


def test_limit_edits_and_top_ups_reach_a_gateway_without_redis_within_2s(seeded, gateway_without_redis, make_key):
    issued = make_key("changes-limits", monthly_limit=Decimal("5"))
    assert get_key(gateway_without_redis, issued.plaintext).json()["data"]["limit"] == "5"
    key = ApiKey.objects.get(pk=issued.api_key.pk)  # edited as the admin or the API would
    key.monthly_limit = Decimal("0.01")
    key.save()
    took = seconds_until(lambda: get_key(gateway_without_redis, issued.plaintext).json()["data"]["limit"] == "0.01")
    assert took < WITHIN
    # A prepaid team with no credit is refused; a top-up made elsewhere counts at once.
    team = Team.objects.create(name="changes-prepaid", prepaid=True)
    prepaid = make_key(team.name)
    assert code(chat(gateway_without_redis, prepaid.plaintext)) == "credit_balance_exhausted"
    add_credit(team, Decimal("1"))
    assert seconds_until(lambda: chat(gateway_without_redis, prepaid.plaintext).status_code == 200) < WITHIN


def test_suspension_reaches_every_gateway_process(seeded, gateway_url, make_key):
    """The shared gateway (two uvicorn workers; on Redis when REDIS_URL is set)."""
    issued = make_key("changes-everywhere")
    team = Team.objects.get(name="changes-everywhere")
    for _ in range(4):  # both workers have it cached
        assert get_key(gateway_url, issued.plaintext).status_code == 200
    set_team_suspended(team, True)
    # Each worker polls on its own clock: within the window every one of them refuses.
    seconds_until(lambda: all(get_key(gateway_url, issued.plaintext).status_code == 403 for _ in range(8)),
                  limit=WITHIN)
    set_team_suspended(team, False)
    seconds_until(lambda: all(get_key(gateway_url, issued.plaintext).status_code == 200 for _ in range(4)),
                  limit=WITHIN)


def test_every_cached_change_moves_the_counter(transactional_db, seeded, make_key):
    """Saves of keys, teams, credits and prices move the counter after their commit; the
    gateway's own touch (last_used) does not. A recreated row never looks unchanged."""
    issued = make_key("counter")
    team = Team.objects.get(name="counter")
    steps = [
        lambda: revoke_key(issued.api_key),
        lambda: set_team_suspended(team, True),
        lambda: add_credit(team, Decimal("2")),
        lambda: team.save(),
    ]
    for step in steps:
        before = changes.current()
        step()
        assert changes.current() != before
    before = changes.current()
    ApiKey.objects.filter(pk=issued.api_key.pk).update(last_used=None)
    assert changes.current() == before
    ConfigVersion.objects.all().delete()  # e.g. a restored database
    changes.bump()
    assert changes.current() not in (0, before)


class _Spy:
    """Stands in for a process's key cache and catalog: records what the listener drops."""

    def __init__(self) -> None:
        self.dropped: list[str | None] = []

    def forget(self, key_hash: str | None = None) -> None:
        self.dropped.append(key_hash)

    def invalidate(self) -> None:
        self.dropped.append(proxy_changes.CATALOG)


def test_a_deployment_sharing_the_redis_server_does_not_drop_our_caches(settings):
    """Pub/sub channels span a Redis server's databases: a change published by a deployment
    on another database (staging beside production) must not reach this one's listener."""
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    ours = settings.REDIS_URL
    neighbour = urlsplit(ours)._replace(path=f"/{(parse_url(ours).get('db', 0) + 1) % 16}").geturl()

    async def scenario() -> list[str | None]:
        spy = _Spy()
        listener = asyncio.create_task(proxy_changes.listen(spy, spy))
        try:
            for _ in range(200):  # until it listens (it starts by dropping what it had)
                if spy.dropped:
                    break
                await asyncio.sleep(0.01)
            spy.dropped.clear()
            settings.REDIS_URL = neighbour
            await asyncio.to_thread(proxy_changes.publish, "neighbours-key-hash")
            settings.REDIS_URL = ours
            await asyncio.to_thread(proxy_changes.publish, "our-key-hash")
            for _ in range(200):
                if spy.dropped:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # anything else on its way arrives too
            return spy.dropped
        finally:
            settings.REDIS_URL = ours
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    assert asyncio.run(scenario()) == ["our-key-hash"]
