"""The durable spool and reconnecting database access, in-process (the outage tests with
a real PostgreSQL cluster stopped and restarted are in test_db_outage.py)."""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import OperationalError, connection
from django.utils import timezone

from billing.models import Charge, RequestRecord
from billing.tasks import price_finished_requests
from proxy import db, limits, runtime
from proxy.spool import Spool
from tokenhub_portal.asgi import application

from .conftest import wait_until

BODY = {"model": "claude-sonnet-4-6", "max_tokens": 40, "messages": [{"role": "user", "content": "hi"}]}


# --- the file format ------------------------------------------------------------------------

def test_spool_appends_seals_and_reads_back(tmp_path):
    spool = Spool(tmp_path)
    spool.append([{"generation_id": "a", "n": 1}, {"generation_id": "b", "n": 2}])
    spool.append([{"generation_id": "c", "n": 3}])
    assert spool.depth == 3
    [segment] = spool.seal()
    assert [r["n"] for r in Spool.read(segment)] == [1, 2, 3] and segment.generation_ids == ["a", "b", "c"]
    spool.append([{"generation_id": "d"}])  # a new segment after sealing
    assert len(list(tmp_path.glob("*.jsonl"))) == 2 and spool.depth == 4
    spool.done(segment)
    assert spool.depth == 1 and len(list(tmp_path.glob("*.jsonl"))) == 1


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    spool = Spool(tmp_path)
    spool.append([{"generation_id": "a"}])
    [segment] = spool.seal()
    with open(segment.path, "ab") as f:
        f.write(b'{"generation_id": "b", "inp')
    assert [r["generation_id"] for r in Spool.read(segment)] == ["a"]


def test_segments_of_a_live_process_are_not_claimed_but_a_dead_ones_are(tmp_path):
    alive, dead, survivor = Spool(tmp_path), Spool(tmp_path), Spool(tmp_path)
    alive.append([{"generation_id": "a"}])
    dead.append([{"generation_id": "d1"}, {"generation_id": "d2"}])
    dead.close()  # the process exits: its lock goes, its file stays
    claimed = survivor.claim_orphans()
    assert [s.generation_ids for s in claimed] == [["d1", "d2"]] and claimed[0].orphan
    assert survivor.depth == 2
    assert Spool(tmp_path).claim_orphans() == []  # the survivor holds it now
    alive.close()


def test_spool_files_are_private_and_durable(tmp_path):
    spool = Spool(tmp_path / "new" / "dir")
    spool.append([{"generation_id": "a"}])
    [path] = (tmp_path / "new" / "dir").glob("*.jsonl")
    assert oct(path.stat().st_mode & 0o777) == "0o600"


# --- database access that replaces broken connections ------------------------------------------

def test_db_run_retries_once_on_a_new_connection(transactional_db):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("the connection is closed")
        return "ok"

    assert async_to_sync(db.run)(flaky) == "ok" and len(calls) == 2

    def down():
        raise OperationalError("connection refused")

    with pytest.raises(db.DatabaseUnavailable) as err:
        async_to_sync(db.run)(down)
    assert err.value.status == 503 and err.value.code == "database_unavailable"


# --- the writer: spool when the database is down, replay when it is back ---------------------

def database_down(monkeypatch, writer):
    """The writer's database connection fails as if PostgreSQL were stopped."""
    real = writer._insert

    async def refused(*args, **kwargs):
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(writer, "_insert", refused)
    return lambda: monkeypatch.setattr(writer, "_insert", real)


def test_a_call_answers_when_its_record_cannot_be_written_and_is_stored_on_replay(
        transactional_db, seeded, make_key, fresh_writer, monkeypatch, settings, simulator_url):
    settings.ANTHROPIC_BASE_URL, settings.ANTHROPIC_API_KEY = simulator_url, "sk-ant-simulated"
    store = runtime.current().limits
    issued = make_key("spooled", monthly_limit=Decimal("10"))
    record_of = sync_to_async(lambda gid: RequestRecord.objects.filter(generation_id=gid).first())

    async def reservation_held(generation_id) -> bool:
        return bool(await store.client().exists(f"th:res:{generation_id}"))

    async def scenario():
        database_back = database_down(monkeypatch, fresh_writer)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as api:
            response = await api.post("/api/v1/chat/completions", json=BODY,
                                      headers={"Authorization": f"Bearer {issued.plaintext}"})
            assert response.status_code == 200, response.text
            generation_id = response.headers["x-generation-id"]
            assert await record_of(generation_id) is None and fresh_writer.spool_depth == 1
            assert (await api.get("/readyz")).json()["spool"]["records"] == 1
            # the settle waits for the record: the worst case stays held meanwhile
            await limits.drain(store, timeout=0.5)
            assert await reservation_held(generation_id)

            database_back()
            assert await fresh_writer.replay() == 1
            await limits.drain(store)
            assert not await reservation_held(generation_id)  # settled once the record reached the ledger
            assert (await api.get("/readyz")).json()["spool"]["records"] == 0
        await runtime.current().upstream.close()
        return generation_id

    generation_id = async_to_sync(scenario)()
    record = RequestRecord.objects.get(generation_id=generation_id)
    assert record.status == "success" and record.output_tokens > 0
    assert fresh_writer.spool_depth == 0 and not [n for n in os.listdir(settings.SPOOL_DIR) if n.endswith(".jsonl")]
    price_finished_requests()  # (or a Celery worker of another test does: either way, once)
    wait_until(lambda: Charge.objects.filter(request=record).exists())
    assert Charge.objects.filter(request=record).count() == 1


def test_replaying_the_same_records_twice_stores_and_charges_them_once(
        transactional_db, seeded, make_key, fresh_writer, settings, tmp_path):
    issued = make_key("twice")
    key = issued.api_key
    fields = dict(generation_id="chatcmpl-replayed-twice", api_key_id=key.id, team_id=key.team_id,
                  requested_model="claude-sonnet-4-6", upstream_model="claude-sonnet-4-6", status="success",
                  http_status=200, input_tokens=10, output_tokens=5, created=timezone.now())
    # Two segments holding the same record: e.g. the database committed a batch but the
    # answer was lost, so it was spooled too; or a process died mid-replay.
    for _ in range(2):
        orphan = Spool(settings.SPOOL_DIR)
        orphan.append([fields])
        orphan.close()
    assert async_to_sync(fresh_writer.replay)() == 2
    assert RequestRecord.objects.filter(generation_id="chatcmpl-replayed-twice").count() == 1
    price_finished_requests()
    wait_until(lambda: Charge.objects.filter(request__generation_id="chatcmpl-replayed-twice").exists())
    assert Charge.objects.filter(request__generation_id="chatcmpl-replayed-twice").count() == 1


def test_a_record_the_database_refuses_is_set_aside_not_replayed_forever(
        transactional_db, seeded, make_key, fresh_writer, settings):
    key = make_key("refused").api_key
    good = dict(generation_id="chatcmpl-good", api_key_id=key.id, team_id=key.team_id, requested_model="m",
                status="success", http_status=200, created=timezone.now())
    bad = {**good, "generation_id": "chatcmpl-bad", "api_key_id": 987654321}  # no such key
    orphan = Spool(settings.SPOOL_DIR)
    orphan.append([good, bad])
    orphan.close()
    async_to_sync(fresh_writer.replay)()
    assert RequestRecord.objects.filter(generation_id="chatcmpl-good").exists()
    assert fresh_writer.spool_depth == 0
    [rejected] = [name for name in os.listdir(settings.SPOOL_DIR) if name.endswith(".rejected")]
    assert "chatcmpl-bad" in (Path(settings.SPOOL_DIR) / rejected).read_text()


RESPONSES_BODY = {"model": "claude-sonnet-4-6", "max_output_tokens": 40, "input": "hi"}


def test_a_stored_response_is_spooled_with_its_record_and_readable_after_replay(
        transactional_db, seeded, make_key, fresh_writer, monkeypatch, settings, simulator_url):
    """store (the default) while the database is down: the call still answers, and the response
    it stored comes back with its record when the spool is replayed (one commit for both)."""
    settings.ANTHROPIC_BASE_URL, settings.ANTHROPIC_API_KEY = simulator_url, "sk-ant-simulated"
    issued = make_key("spooled-responses")
    headers = {"Authorization": f"Bearer {issued.plaintext}"}

    async def scenario():
        database_back = database_down(monkeypatch, fresh_writer)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as api:
            answered = await api.post("/v1/responses", json=RESPONSES_BODY, headers=headers)
            assert answered.status_code == 200, answered.text
            assert fresh_writer.spool_depth == 1
            database_back()
            await fresh_writer.replay()  # (or the writer's own replayer got there first)
            assert fresh_writer.spool_depth == 0
            stored = await api.get(f"/v1/responses/{answered.json()['id']}", headers=headers)
        await runtime.current().upstream.close()
        return answered.json(), stored

    answered, stored = async_to_sync(scenario)()
    assert stored.status_code == 200, stored.text
    assert stored.json()["output"] == answered["output"] and stored.json()["id"] == answered["id"]
    assert RequestRecord.objects.get(generation_id=answered["id"]).api == "responses"


def test_a_stored_response_the_database_refuses_does_not_cost_the_record(
        transactional_db, seeded, make_key, fresh_writer):
    """PostgreSQL's jsonb refuses a NUL character; the call's record (what is billed) is written
    without its stored response rather than lost with it."""
    from billing.models import StoredResponse
    from proxy.recorder import STORED_RESPONSE

    if connection.vendor != "postgresql":
        pytest.skip("SQLite (make run) stores a NUL character in JSON")
    key = make_key("nul").api_key
    now = timezone.now()
    fields = dict(generation_id="resp_nul", api="responses", api_key_id=key.id, team_id=key.team_id,
                  requested_model="claude-sonnet-4-6", status="success", http_status=200, input_tokens=3,
                  output_tokens=2, created=now)
    fields[STORED_RESPONSE] = dict(response_id="resp_nul", team_id=key.team_id, api_key_id=key.id,
                                   input_items=[], response={"output": "bad \x00 text"}, created=now,
                                   expires_at=now)
    async_to_sync(fresh_writer.write)(fields)
    assert RequestRecord.objects.filter(generation_id="resp_nul").exists()
    assert not StoredResponse.objects.filter(response_id="resp_nul").exists()
