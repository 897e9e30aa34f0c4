"""PostgreSQL restarted or stopped under load (SPEC §9), on a private cluster this module
starts (initdb in a temporary directory): the gateway and the Celery worker recover by
themselves, calls that succeeded upstream still answer, their records wait in the spool
and reach the database once it is back — each exactly once, each charged exactly once."""
from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time
from decimal import Decimal

import httpx
import pytest
import redis
from django.conf import settings

from proxy.limits import RESERVATION_INDEX, scripts
from tokenhub_portal.accounts.keys import hash_key
from tokenhub_portal.accounts.models import ApiKey, Team

from .conftest import METRICS_TOKEN, ROOT, _stop, free_port, start_gateway, subprocess_env, wait_until
from .pgcluster import BINDIR, PrivateCluster

pytestmark = pytest.mark.skipif(BINDIR is None, reason="needs the PostgreSQL server binaries (initdb, pg_ctl)")

DB = "tokenhub"
RECOVERY_SECONDS = 10  # "within seconds": the bound the tests hold the gateway to


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def cluster(django_db_setup):
    pg = PrivateCluster(free_port()).init()
    pg.start()
    url = pg.create_database(DB)
    env = subprocess_env(DATABASE_URL=url)
    manage(env, "migrate", "--noinput")
    # Ids far from the shared test database's: the limit counters in Redis are keyed by them.
    base = 900_000_000 + random.randrange(10_000_000)
    for table in ("accounts_team", "accounts_apikey"):
        pg.query(DB, "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", (_table(table), base))
    worker = None
    if settings.REDIS_URL:  # without Redis the gateway prices in-process
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tokenhub_portal", "worker", "--beat", "--pool=solo",
             "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--schedule", str(pg.root / "celerybeat-schedule")],
            cwd=ROOT, env=subprocess_env(DATABASE_URL=url, PRICING_INTERVAL_MS="300"),
            stdout=open(pg.root / "celery.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
    pg.env = env
    yield pg
    if worker is not None:
        _stop(worker)
    pg.destroy()


def _table(name: str) -> str:
    return {"accounts_team": Team._meta.db_table, "accounts_apikey": ApiKey._meta.db_table}[name]


def issue(pg, team: str, *extra: str) -> str:
    return manage(pg.env, "issue_key", "--team", team, *extra).strip().splitlines()[-1]


@pytest.fixture
def gateway(cluster, simulator_url, tmp_path):
    started = []

    def start(workers: int = 2, spool_dir=None):
        url, proc = start_gateway(simulator_url, workers=workers, log_file=tmp_path / "gateway.log",
                                  DATABASE_URL=cluster.url(DB), SPOOL_DIR=str(spool_dir or tmp_path / "spool"))
        started.append(proc)
        return url, proc

    yield start
    for proc in started:
        if proc.poll() is None:
            _stop(proc)


class Load(threading.Thread):
    """Calls one after another until stopped; keeps (status, generation id, cost, body) of each."""

    def __init__(self, url: str, key: str, *, stream: bool = False, pause: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.stream, self.pause = url, key, stream, pause
        self.results: list[tuple[int, str, str | None, str]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        body = {"model": "claude-sonnet-4-6", "max_tokens": 30, "stream": self.stream,
                "messages": [{"role": "user", "content": "ping [[sim:words=8]]"}]}
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stopped.is_set():
                try:
                    r = client.post("/api/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {self.key}"})
                    cost = None
                    if r.status_code == 200 and not self.stream:
                        cost = r.json()["usage"]["cost"]
                    self.results.append((r.status_code, r.headers.get("x-generation-id", ""), cost, r.text[-300:]))
                except httpx.HTTPError as exc:
                    self.results.append((0, "", None, repr(exc)))
                time.sleep(self.pause)

    def stop(self) -> list[tuple[int, str, str | None, str]]:
        self.stopped.set()
        self.join(timeout=90)
        return self.results


def records_and_charges(pg, generation_ids: list[str]) -> dict[str, tuple[int, list[Decimal]]]:
    rows = pg.query(DB, """
        SELECT r.generation_id, COUNT(DISTINCT r.id), ARRAY_REMOVE(ARRAY_AGG(c.amount), NULL)
        FROM proxy_requestrecord r LEFT JOIN billing_charge c ON c.request_id = r.id
        WHERE r.generation_id = ANY(%s) GROUP BY r.generation_id""", (generation_ids,))
    return {gid: (n, charges) for gid, n, charges in rows}


def assert_each_exactly_once(pg, ok: list[tuple[int, str, str | None, str]]) -> None:
    ids = [gid for _, gid, _, _ in ok]
    assert len(ids) == len(set(ids))

    def all_charged():
        found = records_and_charges(pg, ids)
        return len(found) == len(ids) and all(len(charges) == 1 for _, charges in found.values()) and found

    found = wait_until(all_charged, timeout=60, interval=0.5)
    for _, gid, cost, _ in ok:
        records, charges = found[gid]
        assert records == 1 and len(charges) == 1, gid
        if cost is not None:  # what the client was told is what it is charged
            assert charges[0] == Decimal(cost), gid


def ready(url: str) -> dict:
    return httpx.get(url + "/readyz", timeout=5).json()


def test_a_postgresql_restart_heals_without_restarting_anything(cluster, gateway):
    key = issue(cluster, "restart", "--monthly-limit", "100")
    url, _ = gateway()
    auth = {"Authorization": f"Bearer {key}"}
    load = Load(url, key)
    load.start()
    wait_until(lambda: len(load.results) >= 10)
    before = load.results[0][1]
    assert httpx.get(url + "/api/v1/key", headers=auth).status_code == 200

    cluster.restart()
    back = time.monotonic()

    def healthy() -> bool:  # several times in a row, so both worker processes have answered
        for _ in range(6):
            state = ready(url)
            if state["checks"]["database"] != "ok" or state["status"] != "ok":
                return False
            if httpx.get(url + "/api/v1/key", headers=auth, timeout=5).status_code != 200:
                return False
            if httpx.get(url + "/api/v1/generation", params={"id": before}, headers=auth, timeout=5).status_code != 200:
                return False
        return True

    wait_until(healthy, timeout=RECOVERY_SECONDS, interval=0.1)
    recovered_after = time.monotonic() - back
    calls_before = len(load.results)
    wait_until(lambda: len(load.results) >= calls_before + 10)
    results = load.stop()

    assert recovered_after < RECOVERY_SECONDS
    assert [r for r in results if r[0] != 200] == []  # not one call failed, even during the restart
    # the Celery worker's connections healed too: calls made after the restart are charged
    assert_each_exactly_once(cluster, results)


def test_postgresql_down_mid_load_every_200_is_recorded_and_charged_once(cluster, gateway, tmp_path):
    key = issue(cluster, "outage", "--monthly-limit", "100")
    url, _ = gateway()
    loads = [Load(url, key), Load(url, key), Load(url, key, stream=True)]
    for load in loads:
        load.start()
    wait_until(lambda: all(len(load.results) >= 5 for load in loads))

    # (one keep-alive connection: its worker has seen the key before the outage; a worker that
    # never has cannot check a key while the database is down)
    responses = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"})
    body = {"model": "claude-sonnet-4-6", "input": "kept [[sim:words=4]]"}
    assert responses.post("/v1/responses", json=body).status_code == 200
    cluster.stop()
    wait_until(lambda: ready(url)["spool"]["records"] > 0, timeout=10)
    # A Responses API call stores its response (store defaults to true) with its record: in
    # the spool while the database is down, readable once it is back.
    stored = responses.post("/v1/responses", json=body)
    assert stored.status_code == 200, stored.text
    during = ready(url)
    assert during["status"] == "degraded" and during["checks"]["database"].startswith("error")
    metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert float(re.search(r"^tokenhub_spooled_records (\S+)$", metrics, re.M).group(1)) > 0
    time.sleep(3)  # more calls while it is down
    spooled = list((tmp_path / "spool").glob("*.jsonl"))
    assert spooled

    cluster.start()
    wait_until(lambda: not list((tmp_path / "spool").glob("*.jsonl")), timeout=RECOVERY_SECONDS + 10, interval=0.2)
    wait_until(lambda: all(ready(url)["status"] == "ok" for _ in range(4)), timeout=RECOVERY_SECONDS)
    results = [r for load in loads for r in load.stop()]

    assert [r for r in results if r[0] != 200] == []  # no 5xx, not even during the outage
    streamed = [r for r in loads[2].results]
    assert all(body.rstrip().endswith("data: [DONE]") for _, _, _, body in streamed)
    assert_each_exactly_once(cluster, results)
    _assert_no_reservations(cluster, [gid for _, gid, _, _ in results], hash_key(key))  # all settled
    read_back = responses.get(f"/v1/responses/{stored.json()['id']}")
    responses.close()
    assert read_back.status_code == 200 and read_back.json()["output"] == stored.json()["output"]


def _assert_no_reservations(cluster, generation_ids: list[str], key_hash: str) -> None:
    if not settings.REDIS_URL:
        return
    client = redis.Redis.from_url(settings.REDIS_URL)

    def none_left() -> bool:
        pipe = client.pipeline()
        for gid in generation_ids:
            pipe.exists(f"th:res:{gid}")
        return not any(pipe.execute())

    wait_until(none_left, timeout=10)
    [(key_id,)] = cluster.query(DB, f"SELECT id FROM {_table('accounts_apikey')} WHERE key_hash = %s", (key_hash,))
    month = time.strftime("%Y-%m", time.gmtime())
    assert int(client.get(f"th:{month}:key:{key_id}:reserved") or 0) == 0


def test_a_process_starting_with_a_spool_replays_it_first(cluster, gateway, tmp_path):
    key = issue(cluster, "restarted", "--monthly-limit", "100")
    spool_dir = tmp_path / "kept-spool"
    url, proc = gateway(workers=1, spool_dir=spool_dir)
    load = Load(url, key)
    load.start()
    wait_until(lambda: len(load.results) >= 3)
    cluster.stop()
    wait_until(lambda: ready(url)["spool"]["records"] >= 5, timeout=15)
    results = load.stop()
    _stop(proc)  # a deploy while the database is down: the records stay on disk
    left = sum(len(p.read_bytes().splitlines()) for p in spool_dir.glob("*.jsonl"))
    assert left >= 5

    cluster.start()
    url, _ = gateway(workers=1, spool_dir=spool_dir)
    # start-up (lifespan) replays before serving: by the time it answers, the records are in
    assert not list(spool_dir.glob("*.jsonl")) and ready(url)["spool"]["records"] == 0
    ok = [r for r in results if r[0] == 200]
    assert len(ok) == len(results)
    found = records_and_charges(cluster, [gid for _, gid, _, _ in ok])
    assert len(found) == len(ok)
    assert_each_exactly_once(cluster, ok)

    # The first process could not settle its spooled calls (their records were not in the
    # ledger yet); their reservations, no longer renewed, are released by the reaper once
    # RESERVATION_SECONDS have passed (run here as if they had). Then the key's spend is
    # exactly its charges and nothing stays held.
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        client.eval(scripts.REAP, 1, RESERVATION_INDEX, int((time.time() + 3600) * 1000))
        _assert_no_reservations(cluster, [gid for _, gid, _, _ in results], hash_key(key))
    summary = httpx.get(url + "/api/v1/key", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    charged = sum(charges[0] for _, charges in records_and_charges(cluster, [g for _, g, _, _ in ok]).values())
    assert Decimal(summary["usage"]) == charged and Decimal(summary["reserved"]) == 0
