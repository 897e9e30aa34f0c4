"""The billing pipeline through a real Celery worker on real Redis."""
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from billing.models import Charge
from billing.tasks import price_finished_requests

from .conftest import subprocess_env, wait_until

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.celery_worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (CI provides Redis)"),
]


@pytest.fixture
def celery_worker_process(seeded):
    _redis().delete("celery", "unacked", "unacked_index")  # leftovers of workers killed in earlier runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tokenhub_portal", "worker", "--pool=solo",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_worker_prices_requests_exactly_once(celery_worker_process, make_key, make_record):
    issued = make_key()
    record = make_record(issued, input_tokens=1000, output_tokens=1000, cache_read_tokens=1000)
    price_finished_requests.delay()
    price_finished_requests.delay()  # a duplicated message
    charge = wait_until(lambda: Charge.objects.filter(request=record).first(), timeout=60)
    assert charge.amount == Decimal("0.0183")  # 1000×3 + 1000×15 + 1000×0.3 µ$
    record.refresh_from_db()
    assert record.priced_at is not None
    # both messages consumed, still one charge
    wait_until(lambda: _queue_empty(), timeout=30)
    assert Charge.objects.filter(request=record).count() == 1


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


def _queue_empty() -> bool:
    client = _redis()
    try:  # nothing waiting, nothing delivered but unacknowledged
        return client.llen("celery") == 0 and client.hlen("unacked") == 0
    finally:
        client.close()
