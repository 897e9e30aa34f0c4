"""Shared fixtures. Tests use the real database of DATABASE_URL (PostgreSQL in CI) and
Redis of REDIS_URL when set; SQLite and eager tasks otherwise."""
from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core import signals
from django.core.management.base import CommandError
from django.db import close_old_connections
from django.test import TransactionTestCase

from billing.models import Model, Price, RequestRecord
from billing.seed import load_seed
from proxy import runtime
from tokenhub_portal.accounts.models import Team
from tokenhub_portal.web.services import issue_key

ROOT = Path(__file__).resolve().parents[1]
METRICS_TOKEN = "test-metrics-token"
# Gateways started by the tests read their clock's offset from here (see tests/clock.py).
CLOCK_FILE = ROOT / "var" / f"test-clock-{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _no_limit_counters_of_earlier_runs():
    """Limit counters are keyed by key/team id and window; a new test database reuses the
    ids, so counters an earlier run left in the test Redis (they live up to an hour) would
    be taken for this run's spend."""
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        for name in client.scan_iter(match="th:*", count=1000):
            client.delete(name)
        client.close()


@pytest.fixture(autouse=True)
def _fresh_runtime():
    """Each test gets a process runtime of its own: empty caches, a new limits store."""
    runtime.install(runtime.Runtime())
    yield
    runtime.install(runtime.Runtime())


@pytest.fixture
def seeded(db):
    """The seed model table (re-loaded: transactional tests flush it)."""
    load_seed(Model, Price)


@pytest.fixture
def make_key(db):
    def make(team_name: str = "acme", **kwargs):
        team, _ = Team.objects.get_or_create(name=team_name)
        return issue_key(team, name=kwargs.pop("name", "test"), **kwargs)

    return make


class InProcessApi:
    """Calls the one ASGI app in-process (same DB transaction as the test): the lean
    router, and Django for the management API and the portal."""

    def __init__(self, app):
        self.transport = httpx.ASGITransport(app=app)

    def request(self, method: str, path: str, key: str | None = None, json=None, headers=None, content=None,
                params=None, cookies=None):
        hdrs = dict(headers or {})
        if key:
            hdrs.setdefault("Authorization", f"Bearer {key}")

        async def go():
            async with httpx.AsyncClient(transport=self.transport, base_url="http://testserver",
                                         cookies=cookies) as client:
                return await client.request(method, path, json=json, headers=hdrs, content=content, params=params)

        return async_to_sync(go)()

    def get(self, path, key=None, **kw):
        return self.request("GET", path, key, **kw)

    def post(self, path, key=None, **kw):
        return self.request("POST", path, key, **kw)

    def patch(self, path, key=None, **kw):
        return self.request("PATCH", path, key, **kw)

    def delete(self, path, key=None, **kw):
        return self.request("DELETE", path, key, **kw)


@pytest.fixture
def api(seeded):
    from tokenhub_portal.asgi import application

    # As Django's test client does: Django's request signals would close the connection
    # that holds the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield InProcessApi(application)
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def assert_openai_error(response, status: int, code: str | None = None):
    assert response.status_code == status, response.text
    body = orjson.loads(response.content)
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code
    return err


@pytest.fixture
def make_record(seeded):
    def make(api_key, model: str = "claude-sonnet-4-6", *, status="success", created=None, **tokens):
        entry = Model.objects.get(public_id=model)
        key = api_key.api_key if hasattr(api_key, "api_key") else api_key
        fields = dict(
            generation_id=f"chatcmpl-{RequestRecord.objects.count() + 1:08d}-{id(tokens)}",
            api_key=key, team=key.team, requested_model=model, model=entry,
            upstream_model=entry.upstream_id, status=status,
            http_status=200 if status != "error" else 529,
            error_type="" if status != "error" else "overloaded_error",
            created=created or datetime.now(UTC),
        )
        fields.update(tokens)
        return RequestRecord.objects.create(**fields)

    return make


def usd(text: str) -> Decimal:
    return Decimal(text)


def database_url_for_subprocesses() -> str:
    """The URL of the test database, for subprocesses (gateway, Celery worker)."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def subprocess_env(**extra) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url_for_subprocesses(),
           # budget-alert webhooks go to receivers the tests run on 127.0.0.1
           "WEBHOOK_ALLOW_PRIVATE": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each server process tree keeps its own metrics
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


# --- real processes: the simulator, the gateway (uvicorn workers), a Celery worker ----------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=0.5, verify=False).status_code == 200:  # a test's own certificate
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def _stop(proc) -> None:
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def simulator_url():
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/healthz", proc)
    yield url
    _stop(proc)


def start_gateway(simulator_url: str, workers: int = 1, *, log_file: Path | None = None,
                  server_args: tuple[str, ...] = (), scheme: str = "http", **env_overrides: str):
    """The real ASGI app as production serves it (tokenhub_portal.server: uvicorn workers on
    uvloop/httptools) on the test database. With `log_file`, the processes' stdout and stderr
    go there; `server_args` come last (they override the defaults, e.g. --log-level debug)."""
    import subprocess
    import sys

    port = free_port()
    env = subprocess_env(**{"ANTHROPIC_BASE_URL": simulator_url, "ANTHROPIC_API_KEY": "sk-ant-simulated",
                            "ANTHROPIC_MAX_RETRIES": "2", "KEY_CACHE_SECONDS": "30",
                            "METRICS_TOKEN": METRICS_TOKEN, "TOKENHUB_TEST_CLOCK": str(CLOCK_FILE),
                            **env_overrides})
    output = open(log_file, "ab") if log_file is not None else None  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenhub_portal.server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning", *server_args],
        cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT if output else None,
    )
    if output is not None:
        output.close()  # the child has its own descriptor
    url = f"{scheme}://127.0.0.1:{port}"
    _wait_http(url + "/healthz", proc)
    return url, proc


@pytest.fixture(scope="session")
def gateway_url(django_db_setup, simulator_url):
    """One gateway address served by two worker processes."""
    url, proc = start_gateway(simulator_url, workers=2)
    yield url
    _stop(proc)


@pytest.fixture(scope="session")
def gateway_pair(django_db_setup, simulator_url):
    """Two separate gateway processes on two addresses (same database and Redis). Without
    Redis there is no shared limit state, so both addresses are the same single process."""
    from django.conf import settings

    first, first_proc = start_gateway(simulator_url)
    procs = [first_proc]
    second = first
    if settings.REDIS_URL:
        second, second_proc = start_gateway(simulator_url)
        procs.append(second_proc)
    yield first, second
    for proc in procs:
        _stop(proc)


NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture(scope="session")
def node_packages() -> Path:
    """tests/node with its npm packages installed (the SDKs, Claude Code, Codex CLI): installed
    here if `make test` did not (a single test run by hand, say), or if package.json or its
    lock changed since. Skips only where the machine has no node and npm."""
    import shutil
    import subprocess

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs node and npm")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    sources = [NODE_DIR / "package.json", NODE_DIR / "package-lock.json"]
    if not installed.exists() or any(src.stat().st_mtime > installed.stat().st_mtime for src in sources):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True,
                       timeout=600)
    return NODE_DIR


@pytest.fixture(scope="session")
def pricing_worker(django_db_setup):
    """A real Celery worker with beat on Redis when REDIS_URL is set (CI): beat schedules
    the pricing task, the worker runs it. Without Redis the gateway prices in-process."""
    import subprocess
    import sys

    from django.conf import settings

    if not settings.REDIS_URL:
        yield None
        return
    (ROOT / "var").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tokenhub_portal", "worker", "--beat", "--pool=solo",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--schedule", str(ROOT / "var" / "celerybeat-test-schedule")],
        cwd=ROOT, env=subprocess_env(PRICING_INTERVAL_MS="300"),
    )
    yield proc
    _stop(proc)


class Live:
    def __init__(self, url: str, issued):
        self.url = url
        self.issued = issued
        self.key = issued.plaintext

    def openai(self, **kwargs):
        import openai

        kwargs.setdefault("max_retries", 0)
        return openai.OpenAI(base_url=f"{self.url}/api/v1", api_key=self.key, **kwargs)

    def charge_of(self, generation_id: str, timeout: float = 30.0):
        from billing.models import Charge

        return wait_until(lambda: Charge.objects.filter(request__generation_id=generation_id)
                          .select_related("request").first(), timeout=timeout)

    def record_of(self, generation_id: str, timeout: float = 10.0) -> RequestRecord:
        return wait_until(lambda: RequestRecord.objects.filter(generation_id=generation_id).first(), timeout=timeout)


def all_priced(timeout: float = 30) -> None:
    """Price what is unpriced (here, or a Celery worker does) and wait until nothing is left:
    a transactional test's flush racing a pricing worker's row locks deadlocks."""
    from billing.tasks import price_finished_requests

    price_finished_requests()
    wait_until(lambda: not RequestRecord.objects.filter(priced_at__isnull=True).exists(), timeout=timeout)


def _flush_retrying_deadlocks(teardown):
    """A transactional test ends with a TRUNCATE of every table; a Celery pricing worker's
    periodic scan holding a lock on one of them can make PostgreSQL pick the TRUNCATE as a
    deadlock's victim. The flush is one transaction (rolled back whole), so trying it again
    is safe: up to three times, for deadlocks only."""

    def fixture_teardown(self):
        for attempt in range(3):
            try:
                return teardown(self)
            except CommandError as exc:
                if attempt == 2 or not _caused_by_deadlock(exc):
                    raise

    return fixture_teardown


def _caused_by_deadlock(exc: BaseException | None) -> bool:
    """flush says only "couldn't be flushed"; PostgreSQL's reason is down the cause chain."""
    while exc is not None:
        if "deadlock detected" in str(exc):
            return True
        exc = exc.__cause__
    return False


TransactionTestCase._fixture_teardown = _flush_retrying_deadlocks(TransactionTestCase._fixture_teardown)


@pytest.fixture
def fresh_writer(tmp_path, settings):
    """The record writer of this test's process runtime, spooling under tmp_path."""
    settings.SPOOL_DIR = str(tmp_path / "spool")
    writer = runtime.install(runtime.Runtime()).writer
    yield writer
    async_to_sync(writer.drain)()
    all_priced()  # before the tables are emptied: a pricing worker's row locks would deadlock the flush


@pytest.fixture
def live(transactional_db, seeded, gateway_url, pricing_worker, make_key):
    yield Live(gateway_url, make_key("live-team"))
    # Let the pipeline finish with this test's records before the database is flushed
    # (a TRUNCATE racing the worker's row locks deadlocks).
    wait_until(lambda: not RequestRecord.objects.filter(priced_at__isnull=True).exists(), timeout=30)


def run_concurrently(fn, threads: int = 4) -> None:
    """Runs fn in several threads released together, each on its own database connection;
    re-raises the first error."""
    import threading

    from django.db import connections

    barrier = threading.Barrier(threads)
    errors = []

    def worker():
        try:
            barrier.wait()
            fn()
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    if errors:
        raise errors[0]
