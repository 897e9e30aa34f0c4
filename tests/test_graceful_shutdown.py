"""SIGTERM during running streams (SPEC §9): a two-worker gateway stops accepting, lets
streams finish within GRACEFUL_SECONDS, ends the rest as client cancels (billed for what
was delivered), writes every record and settles every reservation before it exits."""
from __future__ import annotations

import signal
import threading
import time
from decimal import Decimal

import httpx
import pytest
import redis

from billing.models import Charge, RequestRecord
from billing.pricing import compute_cost
from billing.tokens import TokenCounts
from proxy import limits
from proxy.auth import KeyInfo

from .conftest import _stop, start_gateway, wait_until

GRACE = 4
SHORT, LONG = 10, 10  # streams that finish within the grace period, and streams that cannot


class Stream(threading.Thread):
    def __init__(self, url: str, key: str, marker: str, stream: bool = True) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.marker, self.stream = url, key, marker, stream
        self.generation_id = ""
        self.status = 0
        self.body = b""
        self.error: Exception | None = None
        self.first_chunk = threading.Event()

    def run(self) -> None:
        body = {"model": "claude-sonnet-4-6", "max_tokens": 400, "stream": self.stream,
                "messages": [{"role": "user", "content": f"count {self.marker}"}]}
        try:
            with httpx.stream("POST", f"{self.url}/api/v1/chat/completions", json=body, timeout=60,
                              headers={"Authorization": f"Bearer {self.key}"}) as response:
                self.status = response.status_code
                self.generation_id = response.headers.get("x-generation-id", "")
                for chunk in response.iter_raw():
                    self.body += chunk
                    if b'"content":"' in self.body or not self.stream:
                        self.first_chunk.set()
        except httpx.HTTPError as exc:
            self.error = exc
        finally:
            self.first_chunk.set()

    @property
    def finished(self) -> bool:
        return self.error is None and self.body.rstrip().endswith(b"data: [DONE]")


@pytest.mark.django_db(transaction=True)
def test_sigterm_finishes_or_bills_every_stream_and_leaves_nothing_held(
        seeded, make_key, simulator_url, pricing_worker, tmp_path, settings):
    issued = make_key("graceful", monthly_limit=Decimal("50"))
    url, proc = start_gateway(simulator_url, workers=2, log_file=tmp_path / "gateway.log",
                              GRACEFUL_SECONDS=str(GRACE), SPOOL_DIR=str(tmp_path / "spool"))
    try:
        _run(url, proc, issued, tmp_path, settings)
    finally:
        if proc.poll() is None:
            _stop(proc)


def _run(url, proc, issued, tmp_path, settings):
    # ~1.5 s of streaming for the short ones; ~30 s for the long ones
    streams = [Stream(url, issued.plaintext, "[[sim:words=15,chunk_delay_ms=100]]") for _ in range(SHORT)]
    streams += [Stream(url, issued.plaintext, "[[sim:words=300,chunk_delay_ms=100]]") for _ in range(LONG)]
    # and plain calls still waiting for upstream when the grace period ends
    plain = [Stream(url, issued.plaintext, "[[sim:delay_ms=30000]]", stream=False) for _ in range(2)]
    for s in streams + plain:
        s.start()
    for s in streams:
        assert s.first_chunk.wait(30) and s.status == 200
    time.sleep(0.3)  # the plain calls are upstream by now

    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)

    def refuses_new_work() -> bool:  # (the master passes SIGTERM on to its workers within 0.5 s)
        try:
            httpx.get(url + "/healthz", timeout=1)
        except httpx.HTTPError:
            return True
        return False

    wait_until(refuses_new_work, timeout=GRACE - 1, interval=0.1)
    proc.wait(timeout=GRACE + 30)
    exited_after = time.monotonic() - stopped_at
    for s in streams + plain:
        s.join(timeout=10)

    short, long = streams[:SHORT], streams[SHORT:]
    assert all(s.finished for s in short), [s.error for s in short]
    assert not any(s.finished for s in long)  # cut at the end of the grace period...
    assert GRACE <= exited_after < GRACE + 15  # ...not before, and not much after

    records = {r.generation_id: r for r in RequestRecord.objects.filter(team__name="graceful")}
    for s in short:
        assert records[s.generation_id].status == "success"
    for s in long:  # a client cancel: billed for the input and the output it was sent
        record = records[s.generation_id]
        assert (record.status, record.http_status, record.output_estimated) == ("cancelled", 499, True)
        delivered = s.body.count(b'"content":"') - 1  # the role chunk carries "content":"" too
        assert record.output_tokens >= delivered > 0
    for p in plain:  # nothing was sent yet: a retryable 503, recorded, not billed
        assert p.status == 503 and b"gateway_stopping" in p.body
        assert records[p.generation_id].status == "error" and records[p.generation_id].http_status == 503
    assert len(records) == len(streams) + len(plain)

    # every call is charged once (the cut ones for what they got), at the exact price
    def all_priced():
        return Charge.objects.filter(request__team__name="graceful").count() == len(records)

    wait_until(all_priced, timeout=60)
    for s in long:
        charge = Charge.objects.get(request__generation_id=s.generation_id)
        record = records[s.generation_id]
        assert charge.amount > 0 and charge.estimated
        assert charge.amount == compute_cost(charge.price, TokenCounts.from_columns(record))

    # every reservation was settled before the processes exited
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        assert not any(client.exists(f"th:res:{gid}") for gid in records)
        assert not [g for g in client.zrange(limits.RESERVATION_INDEX, 0, -1) if g.decode() in records]
        counter = limits.counters_for(_key_info(issued), records[short[0].generation_id].created)[0]
        assert int(client.get(counter.reserved_key) or 0) == 0

    log = (tmp_path / "gateway.log").read_text()
    assert "running requests get up to 4s to finish" in log
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def _key_info(issued):
    return KeyInfo.from_model(issued.api_key)
