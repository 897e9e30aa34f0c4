"""Soak run (``make soak``): the production shape under a steady load for a long while, to
catch what short tests cannot — memory or descriptor leaks, latency creeping up, money
drifting from the ledger.

Processes: the Anthropic simulator, the gateway (2 uvicorn workers, tokenhub_portal.server), a Celery worker with
beat, all on the PostgreSQL of DATABASE_URL and the Redis of REDIS_URL (both required).
A fresh team and key (with a monthly limit, so every call is reserved and settled) are made
for the run. An open-loop client sends requests at a fixed rate (a share of them streamed),
whatever the latency, for SOAK_MINUTES (default 10).

Report: RSS and open file descriptors of every process at the start, after the first
minute (warm-up) and at the end; p50/p99 latency per minute (plain and streamed); then the
ledger, once the pricing task has caught up: every 200 has exactly one request record and
one charge, nothing else was recorded, and the sum of the charges equals the sum of the
usage priced again here with billing.pricing.compute_cost (and what the clients were told
in ``usage.cost``). Exit status 1 if a request failed or the ledger does not reconcile.

Usage: ``python -m bench.soak [--minutes 10] [--rate 30] [--stream-share 0.3]``
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import orjson
import uvloop

from bench.gateway import BENCH_DIR, HOST, MODEL, PY, ROOT, Service, django_env, free_port, gateway_argv, manage
from bench.loadgen import GATEWAY_CONTENT, GATEWAY_STREAM_END, HttpConnection, ResponseError, percentile, process_tree

SOAK_DIR = ROOT / "var" / "soak"
WORDS = 12
MAX_CONNECTIONS = 256
GENERATION_ID = re.compile(rb'"id":"(chatcmpl-[0-9a-f]+)"')
COST = re.compile(rb'"cost":"([0-9.]+)"')
WARMUP_SECONDS = 60


# --------------------------------------------------------------------------- processes


def load_driven_sockets(ports: set[int]) -> set[str]:
    """Inodes of TCP connections to or from `ports` (the gateway's and the simulator's): the
    clients' connections and the gateway's upstream keep-alive pool, whose sizes follow the
    load (the pool also breathes with its 30 s idle expiry), so they are left out of the
    descriptor counts; what is left (files, pipes, database and Redis connections) must not grow."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port, remote_port = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
            state, inode = fields[3], fields[9]
            if (local_port in ports or remote_port in ports) and state != "0A":  # 0A: LISTEN, a server's own socket
                inodes.add(f"socket:[{inode}]")
    return inodes


def rss_and_fds(pid: int, clients: set[str]) -> tuple[int, int] | None:
    """(resident set size in KiB, open file descriptors but the load-driven connections) of
    a process, None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                fds += os.readlink(f"/proc/{pid}/fd/{fd}") not in clients
            except OSError:
                continue
    except OSError:
        return None
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return rss, fds


def process_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    for marker, name in (("resource_tracker", "resource tracker"), ("multiprocessing.spawn", "gateway worker"),
                         ("tokenhub_portal.server", "gateway master"), ("celery", "celery"), ("simulator", "simulator")):
        if marker in text:
            return name
    return text[:40]


def snapshot(roots: dict[str, int], ports: set[int]) -> dict[int, tuple[str, int, int]]:
    """{pid: (name, RSS KiB, FDs)} for every process of every service."""
    out = {}
    clients = load_driven_sockets(ports)
    for root in roots.values():
        for pid in process_tree(root):
            sample = rss_and_fds(pid, clients)
            if sample is not None:
                out[pid] = (process_name(pid), *sample)
    return out


# --------------------------------------------------------------------------- the load


@dataclass
class Outcome:
    minute: int
    stream: bool
    status: int              # 0: no HTTP answer
    latency: float
    generation_id: str = ""
    cost: str | None = None
    problem: str = ""


@dataclass
class Driver:
    """Open-loop: request i is sent at start + i / rate on an idle keep-alive connection
    (a new one if none is idle), never waiting for earlier answers."""

    port: int
    key: str
    rate: float
    seconds: float
    stream_share: float
    outcomes: list[Outcome] = field(default_factory=list)
    idle: dict[bool, list[HttpConnection]] = field(default_factory=lambda: {False: [], True: []})
    open_connections: int = 0
    late: int = 0            # requests sent late because every connection was busy

    def raw(self, stream: bool) -> bytes:
        body = orjson.dumps({"model": MODEL, "max_tokens": 64, "stream": stream,
                             "messages": [{"role": "user", "content": f"soak [[sim:words={WORDS}]]"}]})
        head = (f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
                f"Content-Type: application/json\r\nAuthorization: Bearer {self.key}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode() + body

    async def run(self) -> None:
        requests = {False: self.raw(False), True: self.raw(True)}
        start = time.perf_counter()
        total = int(self.seconds * self.rate)
        pending = set()
        every = round(1 / self.stream_share) if self.stream_share > 0 else 0
        for i in range(total):
            due = start + i / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            stream = bool(every) and i % every == 0
            task = asyncio.ensure_future(self.one(int((due - start) // 60), stream, requests[stream]))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        for pool in self.idle.values():
            for conn in pool:
                conn.close()

    async def connection(self, stream: bool) -> HttpConnection:
        pool = self.idle[stream]
        while pool:
            conn = pool.pop()
            if not conn.closed:
                return conn
            self.open_connections -= 1
        while self.open_connections >= MAX_CONNECTIONS:
            self.late += 1
            await asyncio.sleep(0.005)
            if pool:
                return await self.connection(stream)
        self.open_connections += 1
        try:
            return await HttpConnection.open(HOST, self.port, GATEWAY_CONTENT if stream else None)
        except OSError:
            self.open_connections -= 1
            raise

    async def one(self, minute: int, stream: bool, raw: bytes) -> None:
        started = time.perf_counter()
        try:
            conn = await self.connection(stream)
            response = await conn.request(raw)
        except (OSError, ResponseError) as exc:
            self.outcomes.append(Outcome(minute, stream, 0, time.perf_counter() - started, problem=repr(exc)))
            return
        latency = time.perf_counter() - started
        if conn.closed:
            self.open_connections -= 1
        else:
            self.idle[stream].append(conn)
        body = bytes(response.body)
        found = GENERATION_ID.search(body)
        outcome = Outcome(minute, stream, response.status, latency, found.group(1).decode() if found else "")
        if response.status != 200:
            outcome.problem = body[:200].decode(errors="replace")
        elif stream and GATEWAY_STREAM_END not in body[-100:]:
            outcome.problem = "stream without [DONE]"
        elif not stream:
            cost = COST.search(body)
            outcome.cost = cost.group(1).decode() if cost else None
        self.outcomes.append(outcome)


# --------------------------------------------------------------------------- the ledger


def reconcile(env: dict[str, str], key: str, outcomes: list[Outcome], timeout: float = 120.0) -> tuple[list[str], bool]:
    """Every 200 has one record and one charge; charges equal the usage priced again."""
    os.environ.update({k: v for k, v in env.items() if k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG")})
    os.environ["DJANGO_SETTINGS_MODULE"] = "tokenhub_portal.settings"
    import django  # Django is set up here, from the run's environment, not at import

    django.setup()
    from billing.models import Charge, Price, RequestRecord
    from billing.pricing import compute_cost, format_usd
    from billing.tokens import TokenCounts
    from tokenhub_portal.accounts.keys import hash_key

    records = RequestRecord.objects.filter(api_key__key_hash=hash_key(key))
    deadline = time.monotonic() + timeout
    while records.filter(priced_at__isnull=True).exists() and time.monotonic() < deadline:
        time.sleep(1)
    ok = {o.generation_id for o in outcomes if o.status == 200 and not o.problem}
    rows = {r.generation_id: r for r in records}
    charges = defaultdict(list)
    for c in Charge.objects.filter(request__in=records).select_related("request"):
        charges[c.request.generation_id].append(c.amount)
    missing_records = ok - rows.keys()
    uncharged = [g for g in ok if len(charges.get(g, [])) != 1]
    unexpected = rows.keys() - ok
    charged_total = sum((a for amounts in charges.values() for a in amounts), Decimal(0))
    versions = defaultdict(list)  # model → its price versions, oldest first
    for price in Price.objects.order_by("effective_from"):
        versions[price.model_id].append(price)
    recomputed = Decimal(0)
    for r in rows.values():
        if r.status in ("success", "cancelled") and r.model_id is not None:
            price = [p for p in versions[r.model_id] if p.effective_from <= r.created][-1]
            recomputed += compute_cost(price, TokenCounts.from_columns(r))
    told = sum((Decimal(o.cost) for o in outcomes if o.cost is not None), Decimal(0))
    told_charged = sum((charges[o.generation_id][0] for o in outcomes if o.cost is not None
                        and len(charges.get(o.generation_id, [])) == 1), Decimal(0))
    lines = [
        f"- 200 responses: {len(ok)}; request records: {len(rows)}; charges: {sum(len(v) for v in charges.values())}",
        f"- 200s without a record: {len(missing_records)}; 200s without exactly one charge: {len(uncharged)}; "
        f"records that were not a 200: {len(unexpected)}",
        f"- sum of charges: ${format_usd(charged_total)}; usage priced again with compute_cost: "
        f"${format_usd(recomputed)} ({'equal' if charged_total == recomputed else 'DIFFERENT'})",
        f"- plain responses: `usage.cost` told to clients ${format_usd(told)}, their charges ${format_usd(told_charged)} "
        f"({'equal' if told == told_charged else 'DIFFERENT'})",
    ]
    good = not missing_records and not uncharged and not unexpected and charged_total == recomputed and told == told_charged
    return lines, good


# --------------------------------------------------------------------------- report


def memory_table(samples: list[tuple[str, dict[int, tuple[str, int, int]]]]) -> tuple[list[str], bool]:
    (_, start), (_, warm), (_, end) = samples
    rows = ["| process | pid | RSS MiB start / warm / end | RSS growth after warm-up | FDs¹ start / warm / end |",
            "|---|---:|---:|---:|---:|"]
    ok = True
    for pid, (name, rss_end, fds_end) in sorted(end.items(), key=lambda item: item[1][0]):
        if name == "resource tracker":
            continue
        rss0, fds0 = start.get(pid, (name, None, None))[1:]
        rss1, fds1 = warm.get(pid, (name, None, None))[1:]
        growth = (rss_end - rss1) / rss1 * 100 if rss1 else None
        if growth is not None and growth >= 10 or fds1 is not None and fds_end > fds1 + 2:
            ok = False
        mib = lambda v: "–" if v is None else f"{v / 1024:.1f}"  # noqa: E731
        rows.append(f"| {name} | {pid} | {mib(rss0)} / {mib(rss1)} / {mib(rss_end)} | "
                    f"{'–' if growth is None else f'{growth:+.1f}%'} | {fds0 if fds0 is not None else '–'} / "
                    f"{fds1 if fds1 is not None else '–'} / {fds_end} |")
    return rows, ok


def latency_table(outcomes: list[Outcome]) -> list[str]:
    rows = ["| minute | requests | errors | plain p50 / p99 ms | stream p50 / p99 ms |", "|---:|---:|---:|---:|---:|"]
    by_minute = defaultdict(list)
    for o in outcomes:
        by_minute[o.minute].append(o)
    for minute in sorted(by_minute):
        group = by_minute[minute]
        plain = [o.latency for o in group if not o.stream and o.status == 200 and not o.problem]
        stream = [o.latency for o in group if o.stream and o.status == 200 and not o.problem]
        errors = sum(1 for o in group if o.status != 200 or o.problem)
        fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
        rows.append(f"| {minute + 1} | {len(group)} | {errors} | {fmt(percentile(plain, 50))} / {fmt(percentile(plain, 99))} "
                    f"| {fmt(percentile(stream, 50))} / {fmt(percentile(stream, 99))} |")
    return rows


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 10)),
                        help="length of the run (default: SOAK_MINUTES or 10)")
    parser.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", 30)),
                        help="requests per second (default: SOAK_RATE or 30)")
    parser.add_argument("--stream-share", type=float, default=0.3, help="share of streamed requests (default 0.3)")
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes (default 2)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or not 0 <= args.stream_share <= 1:
        parser.error("--minutes and --rate must be positive, --stream-share within 0..1")
    return args


def start(args, started: list[Service]) -> tuple[dict[str, Service], dict[str, str], str]:
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database_url.startswith("postgres") or not redis_url:
        raise SystemExit("make soak needs the production shape: DATABASE_URL=postgres://… and REDIS_URL=redis://…")
    sim_port, gw_port = free_port(), free_port()
    sim = Service("soak-simulator", [PY, "-m", "simulator", "--host", HOST, "--port", str(sim_port)],
                  dict(os.environ), sim_port)
    started.append(sim)
    env = django_env(sim.url, database_url)
    env["SPOOL_DIR"] = str(SOAK_DIR / "spool")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the gateway's workers share a directory of their own
    manage(env, "migrate", "-v0")
    team = f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    key = manage(env, "issue_key", "--team", team, "--name", "soak", "--monthly-limit", "1000000").strip().splitlines()[-1]
    gateway = Service("soak-gateway", gateway_argv(gw_port, args.workers), env, gw_port)
    started.append(gateway)
    celery = Service("soak-celery", [PY, "-m", "celery", "-A", "tokenhub_portal", "worker", "--beat", "--pool=solo",
                                     "--loglevel=WARNING", "--without-gossip", "--without-mingle",
                                     "--schedule", str(SOAK_DIR / "celerybeat-schedule")], env, 0)
    started.append(celery)
    sim.wait_ready()
    gateway.wait_ready(workers=args.workers if args.workers > 1 else 0)
    return {"simulator": sim, "gateway": gateway, "celery": celery}, env, key


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for directory in (BENCH_DIR, SOAK_DIR):
        directory.mkdir(parents=True, exist_ok=True)
    started: list[Service] = []
    try:
        services, env, key = start(args, started)
        roots = {name: s.proc.pid for name, s in services.items()}
        seconds = args.minutes * 60
        print(f"soak: {args.rate:g} req/s for {args.minutes:g} min ({args.stream_share:.0%} streamed), "
              f"gateway --workers {args.workers}, logs in {BENCH_DIR.relative_to(ROOT)}/", file=sys.stderr, flush=True)
        ports = {services["gateway"].port, services["simulator"].port}
        samples = [("start", snapshot(roots, ports))]
        driver = Driver(services["gateway"].port, key, args.rate, seconds, args.stream_share)

        async def run() -> None:
            async def sample_after_warmup() -> None:
                await asyncio.sleep(min(WARMUP_SECONDS, seconds / 2))
                samples.append(("warm", snapshot(roots, ports)))

            sampler = asyncio.ensure_future(sample_after_warmup())
            progress = asyncio.ensure_future(report_progress(driver, seconds))
            await driver.run()
            await sampler
            progress.cancel()

        uvloop.run(run())
        samples.append(("end", snapshot(roots, ports)))
        alive = all(s.proc.poll() is None for s in services.values())
        ledger, ledger_ok = reconcile(env, key, driver.outcomes)
    finally:
        for service in reversed(started):
            service.stop()

    failures = [o for o in driver.outcomes if o.status != 200 or o.problem]
    memory, memory_ok = memory_table(samples)
    report = [
        f"# Soak: {args.rate:g} req/s for {args.minutes:g} min, {args.stream_share:.0%} streamed "
        f"({WORDS}-word replies), gateway --workers {args.workers}, PostgreSQL, Redis, Celery worker+beat",
        "", f"{len(driver.outcomes)} requests, {len(failures)} failed, {driver.late} sent late (all connections busy)",
        "", "## Processes (RSS, open file descriptors)", "", *memory,
        "", "¹ open descriptors other than the connections whose number follows the load (clients to the gateway, "
            "the gateway's upstream pool to the simulator)",
        "", "## Latency per minute", "", *latency_table(driver.outcomes),
        "", "## Ledger", "", *ledger, "",
    ]
    for o in failures[:5]:
        report.append(f"failed: HTTP {o.status} {o.problem[:160]}")
    text = "\n".join(report)
    print(text)
    (SOAK_DIR / "report.md").write_text(text + "\n")
    ok = not failures and ledger_ok and alive
    print(f"\n{'OK' if ok else 'FAILED'}: requests {'ok' if not failures else 'FAILED'}, ledger "
          f"{'reconciles' if ledger_ok else 'DOES NOT RECONCILE'}, processes {'alive' if alive else 'DIED'}, "
          f"memory/FDs {'flat' if memory_ok else 'GREW (see table)'}; report in {SOAK_DIR / 'report.md'}")
    return 0 if ok else 1


async def report_progress(driver: Driver, seconds: float) -> None:
    start = time.perf_counter()
    while True:
        await asyncio.sleep(60)
        done = len(driver.outcomes)
        failed = sum(1 for o in driver.outcomes if o.status != 200 or o.problem)
        print(f"  {time.perf_counter() - start:5.0f}/{seconds:.0f}s: {done} answered, {failed} failed",
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
