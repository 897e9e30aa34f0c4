"""Gateway overhead benchmark: the same load DIRECT to the Anthropic simulator and THROUGH
the gateway in front of it, in one run, on one machine (``make bench``).

Method
------
- Processes: the simulator (``python -m simulator``, one process), the gateway
  (``python -m tokenhub_portal.server --workers N``: uvicorn workers on uvloop + httptools, against
  a fresh SQLite file under ``var/bench/`` unless ``DATABASE_URL`` is set, with
  ``REDIS_URL`` passed through when set) and, for each run, a load generator in its own
  process (``bench/loadgen.py``). All listen on free ephemeral ports on 127.0.0.1.
- Load generator: a raw HTTP/1.1 client on uvloop (``asyncio.Protocol``, one keep-alive
  connection per concurrent worker, pre-serialised requests, incremental parsing of
  Content-Length and chunked bodies). It is kept light on purpose: on a 2-core machine it
  shares the CPU with the simulator and the gateway, and an httpx/aiohttp client would
  dominate the measurement. Its own CPU per request is reported so that can be checked.
- Each scenario runs DIRECT (client -> simulator, Anthropic format) and then THROUGH
  (client -> gateway -> the same simulator, in the scenario's front door's format: Chat
  Completions, Messages, or the Responses API with its default ``store: true``) with the same reply
  (``[[sim:words=12]]``: 12 words, streamed as 12 content deltas). Every run starts with a
  warm-up (excluded); then, with all connections idle, the measured phase runs until its
  request count or its duration is reached, whichever comes first.
- Per run: requests/s (successful responses / measured wall time), latency of the full
  response p50/p99, for streams the time to the first content chunk (gateway: the first
  ``data:`` chunk with ``"content":"`` followed by a non-quote, i.e. after the role chunk;
  direct: the first ``content_block_delta``) p50/p99, and errors (non-200, malformed,
  fewer than 12 content chunks, no stream terminator, connection errors, timeouts).
  Added latency = THROUGH - DIRECT, percentile by percentile.
- CPU: utime+stime from /proc/<pid>/stat of the gateway's master and all its descendants
  (the workers), sampled by the load generator right before and shortly after the
  measured phase, divided by the requests in it. The simulator is measured the same way
  (informational: the gateway's cost is its own CPU, not the simulator's).
- Afterwards the request records are counted: the gateway commits a record for every
  request before it completes the response, so there must be at least as many new rows in
  ``proxy_requestrecord`` as successful THROUGH requests (warm-ups included).

The exit status is non-zero if any request failed or records are missing.

Usage: ``python -m bench.gateway [--workers 2] [--duration 10] [--quick] [--scenarios a,b]``.
``--workers 2`` (the default) is the production-like setting for a 2-core machine: one
uvicorn worker per core. Note that the load generator and the simulator share those cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen import REQUEST_TIMEOUT, process_tree

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "var" / "bench"
PY = sys.executable
HOST = "127.0.0.1"
MODEL = "claude-sonnet-4-6"
WORDS = 12
PROMPT = f"Hello [[sim:words={WORDS}]]"
MAX_TOKENS = 64
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    stream: bool
    requests: int  # the measured phase stops at this count or at --duration
    limited: bool = False  # through a key with a monthly limit and RPM/TPM (reserve + settle)
    front: str = "chat"    # the gateway's front door: "chat" (/chat/completions), "messages" or "responses"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("plain-c1", 1, False, 2_000),
        Scenario("plain-c32", 32, False, 10_000),
        Scenario("limits-c32", 32, False, 10_000, limited=True),
        Scenario("stream-c1", 1, True, 2_000),
        Scenario("stream-c16", 16, True, 10_000),
        Scenario("stream-c32", 32, True, 10_000),
        Scenario("messages-c1", 1, False, 2_000, front="messages"),
        Scenario("messages-c32", 32, False, 10_000, front="messages"),
        Scenario("messages-stream-c16", 16, True, 10_000, front="messages"),
        # The Responses API with its defaults (store: true, so every answer is also stored)
        Scenario("responses-plain-c32", 32, False, 10_000, front="responses"),
        Scenario("responses-stream-c16", 16, True, 10_000, front="responses"),
    )
}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class Service:
    """A server process we started: its log goes to var/bench/<name>.log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.port = name, port
        self.log_path = BENCH_DIR / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        # own session: a Ctrl-C reaches only this script, which then stops us in order
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self, workers: int = 0) -> None:
        """Until GET /healthz answers 200 and `workers` worker processes have started."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._healthy() and len(self.workers()) >= workers:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def workers(self) -> list[int]:
        """Child processes, minus multiprocessing's resource tracker (uvicorn spawns one)."""
        return [pid for pid in process_tree(self.proc.pid)[1:] if b"resource_tracker" not in cmdline(pid)]

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the process (uvicorn's master stops its workers), then SIGKILL to
        whatever of its tree is left."""
        leftovers = {pid: cmdline(pid) for pid in process_tree(self.proc.pid)[1:]} if self.proc.poll() is None else {}
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid, argv in leftovers.items():
            if cmdline(pid) == argv:  # still ours, not a recycled pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()


def gateway_argv(port: int, workers: int) -> list[str]:
    """The gateway as production runs it (README, Deploy)."""
    return [PY, "-m", "tokenhub_portal.server", "--host", HOST, "--port", str(port), "--workers", str(workers),
            "--log-level", "warning"]


def django_env(sim_url: str, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tokenhub_portal.settings", DEBUG="0",
        SECRET_KEY=os.environ.get("SECRET_KEY") or "bench-secret-key-not-for-production",
        DATABASE_URL=database_url, ANTHROPIC_BASE_URL=sim_url, ANTHROPIC_API_KEY="sk-ant-bench",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    return env  # REDIS_URL passes through when set (pricing then waits for a worker/sweeper)


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def fresh_database() -> tuple[str, bool]:
    """DATABASE_URL from the environment, else a new SQLite file; True if it is new."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], False
    path = BENCH_DIR / "bench.sqlite3"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}", True


def count_records(env: dict[str, str]) -> int:
    code = "from billing.models import RequestRecord; print(RequestRecord.objects.count())"
    return int(manage(env, "shell", "-c", code).strip().splitlines()[-1])


# --------------------------------------------------------------------------- runs


def anthropic_body(stream: bool) -> dict:
    body = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
    return body


def direct_spec(sim: Service, stream: bool) -> dict:
    return {"kind": "anthropic", "host": HOST, "port": sim.port, "path": "/v1/messages", "body": anthropic_body(stream),
            "headers": {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01"},
            "cpu_roots": {"simulator": sim.proc.pid}}


def gateway_spec(gateway: Service, sim: Service, key: str, scenario: Scenario) -> dict:
    """The same request through the gateway, in the wire format of the scenario's front door."""
    roots = {"gateway": gateway.proc.pid, "simulator": sim.proc.pid}
    if scenario.front == "messages":
        return {"kind": "anthropic", "host": HOST, "port": gateway.port, "path": "/v1/messages",
                "body": anthropic_body(scenario.stream),
                "headers": {"x-api-key": key, "anthropic-version": "2023-06-01"}, "cpu_roots": roots}
    if scenario.front == "responses":
        kind, path = "responses", "/api/v1/responses"
        body = {"model": MODEL, "input": PROMPT, "max_output_tokens": MAX_TOKENS}
    else:
        kind, path = "openai", "/api/v1/chat/completions"
        body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
    if scenario.stream:
        body["stream"] = True
    return {"kind": kind, "host": HOST, "port": gateway.port, "path": path,
            "body": body, "headers": {"Authorization": f"Bearer {key}"}, "cpu_roots": roots}


def run_load(spec: dict, scenario: Scenario, seconds: float, warmup: float) -> dict:
    """One load generator process for one run; returns its JSON result."""
    spec = {**spec, "concurrency": scenario.concurrency, "min_chunks": WORDS if scenario.stream else 0,
            "requests": scenario.requests, "seconds": seconds,
            "warmup_requests": 100 * scenario.concurrency, "warmup_seconds": warmup}
    proc = subprocess.Popen([PY, "-m", "bench.loadgen"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(json.dumps(spec), timeout=warmup + seconds + 2 * REQUEST_TIMEOUT + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}):\n{err}")
    return json.loads(out.strip().splitlines()[-1])


def report_run(scenario: Scenario, side: str, r: dict) -> None:
    ttft = f", TTFT p50 {fmt(r['ttft_p50'])} ms" if scenario.stream else ""
    print(f"  {scenario.name:<11} {side:<7} {r['ok']:>6} ok in {r['seconds']:5.1f}s = {r['rps']:7.1f} req/s, "
          f"p50/p99 {fmt(r['p50'])}/{fmt(r['p99'])} ms{ttft}, errors {r['errors'] + r['warmup_errors']}",
          file=sys.stderr, flush=True)
    for sample in r["warmup_error_samples"] + r["error_samples"]:
        print(f"    error: {sample}", file=sys.stderr)


# --------------------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def cpu_ms_per_request(r: dict, group: str) -> float | None:
    n = r["ok"] + r["errors"]
    return r["cpu_seconds"][group] * 1000 / n if n and group in r["cpu_seconds"] else None


def machine_line(workers: int) -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (f"Machine: {len(os.sched_getaffinity(0))} CPUs ({model}), Python {platform.python_version()}; "
            f"gateway: {workers} uvicorn worker(s) (uvloop, httptools, a SO_REUSEPORT socket each); simulator: 1 process; "
            f"load generator: 1 process (raw HTTP/1.1 on uvloop)")


def main_table(results: list[tuple[Scenario, dict, dict]]) -> list[str]:
    rows = ["| scenario | conc | direct req/s | gateway req/s | direct p50/p99 ms | gateway p50/p99 ms "
            "| added p50/p99 ms | direct TTFT p50 | gateway TTFT p50 | added TTFT p50 | gateway CPU ms/req "
            "| errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s, d, g in results:
        rows.append(
            f"| {s.name} | {s.concurrency} | {d['rps']:.0f} | {g['rps']:.0f} "
            f"| {fmt(d['p50'])} / {fmt(d['p99'])} | {fmt(g['p50'])} / {fmt(g['p99'])} "
            f"| {fmt(diff(d['p50'], g['p50']))} / {fmt(diff(d['p99'], g['p99']))} "
            f"| {fmt(d['ttft_p50'])} | {fmt(g['ttft_p50'])} | {fmt(diff(d['ttft_p50'], g['ttft_p50']))} "
            f"| {fmt(cpu_ms_per_request(g, 'gateway'), 2)} | {d['errors']} / {g['errors']} |")
    return rows


def limits_line(results: list[tuple[Scenario, dict, dict]]) -> str:
    """What reserve-and-settle adds: the limited key against the unlimited one, same load."""
    through = {s.name: g for s, _, g in results}
    if "plain-c32" not in through or "limits-c32" not in through:
        return ""
    plain, limited = through["plain-c32"], through["limits-c32"]
    return (f"\nlimit checks (limits-c32 − plain-c32, through the gateway): "
            f"p50 {fmt(diff(plain['p50'], limited['p50']))} ms, p99 {fmt(diff(plain['p99'], limited['p99']))} ms, "
            f"CPU {fmt(diff(cpu_ms_per_request(plain, 'gateway'), cpu_ms_per_request(limited, 'gateway')), 2)} ms/req")


def responses_line(results: list[tuple[Scenario, dict, dict]]) -> str:
    """Gateway CPU per request of the Responses API against Chat Completions, same load."""
    through = {s.name: g for s, _, g in results}
    parts = []
    for chat, responses in (("plain-c32", "responses-plain-c32"), ("stream-c16", "responses-stream-c16")):
        if chat in through and responses in through:
            a, b = cpu_ms_per_request(through[chat], "gateway"), cpu_ms_per_request(through[responses], "gateway")
            if a and b:
                parts.append(f"{responses} {b:.2f} vs {chat} {a:.2f} ms/req ({(b - a) / a * 100:+.0f}%)")
    return "\nResponses API gateway CPU: " + "; ".join(parts) if parts else ""


def detail_table(results: list[tuple[Scenario, dict, dict]]) -> list[str]:
    rows = ["| scenario | requests direct / gateway | TTFT p99 direct / gateway / added ms "
            "| simulator CPU ms/req direct / through | load generator CPU ms/req direct / through |",
            "|---|---:|---:|---:|---:|"]
    for s, d, g in results:
        rows.append(
            f"| {s.name} | {d['ok']} / {g['ok']} "
            f"| {fmt(d['ttft_p99'])} / {fmt(g['ttft_p99'])} / {fmt(diff(d['ttft_p99'], g['ttft_p99']))} "
            f"| {fmt(cpu_ms_per_request(d, 'simulator'), 2)} / {fmt(cpu_ms_per_request(g, 'simulator'), 2)} "
            f"| {fmt(cpu_ms_per_request(d, 'loadgen'), 2)} / {fmt(cpu_ms_per_request(g, 'loadgen'), 2)} |")
    return rows


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2,
                        help="gateway uvicorn workers (default 2: one per core, the production-like setting "
                             "for a 2-core machine)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 s per run, 0.5 s warm-up")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    args.scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown or not args.scenarios:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    if args.workers < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--workers must be >= 1, --duration > 0, --warmup >= 0")
    if args.quick:
        args.duration, args.warmup = 2.0, 0.5
    return args


def start_services(args: argparse.Namespace, database_url: str,
                   started: list[Service]) -> tuple[Service, Service, dict, dict[bool, str]]:
    """Simulator, then migrations and keys, then the gateway; returns them with the
    gateway's environment and the keys (unlimited, and limited: the limits never bind
    but every request is reserved and settled)."""
    sim_port = free_port()
    sim = Service("simulator", [PY, "-m", "simulator", "--host", HOST, "--port", str(sim_port)],
                  dict(os.environ), sim_port)
    started.append(sim)
    env = django_env(sim.url, database_url)
    manage(env, "migrate", "-v0")
    keys = {
        False: manage(env, "issue_key", "--team", "bench", "--name", "bench").strip().splitlines()[-1],
        True: manage(env, "issue_key", "--team", "bench", "--name", "bench-limited", "--monthly-limit", "100000",
                     "--rpm", "100000000", "--tpm", "2000000000").strip().splitlines()[-1],
    }
    gw_port = free_port()
    gateway = Service("gateway", gateway_argv(gw_port, args.workers), env, gw_port)
    started.append(gateway)
    sim.wait_ready()
    gateway.wait_ready(workers=args.workers if args.workers > 1 else 0)  # 1 worker: no master
    return sim, gateway, env, keys


def run_scenarios(args, sim: Service, gateway: Service, keys: dict[bool, str]) -> list[tuple[Scenario, dict, dict]]:
    results = []
    for name in args.scenarios:
        s = SCENARIOS[name]
        direct = run_load(direct_spec(sim, s.stream), s, args.duration, args.warmup)
        report_run(s, "direct", direct)
        through = run_load(gateway_spec(gateway, sim, keys[s.limited], s), s, args.duration, args.warmup)
        report_run(s, "gateway", through)
        results.append((s, direct, through))
    return results


def check_records(env: dict, before: int, results: list[tuple[Scenario, dict, dict]]) -> bool:
    written = count_records(env) - before
    expected = sum(g["ok"] + g["warmup_ok"] for _, _, g in results)
    print(f"records written: {written} (expected ≥ {expected}: successful THROUGH requests incl. warm-up)")
    return written >= expected


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    started: list[Service] = []
    try:
        print(f"starting simulator and gateway (logs in {BENCH_DIR.relative_to(ROOT)}/)...", file=sys.stderr)
        database_url, fresh = fresh_database()
        sim, gateway, env, keys = start_services(args, database_url, started)
        before = 0 if fresh else count_records(env)
        results = run_scenarios(args, sim, gateway, keys)
        print()
        print(machine_line(args.workers))
        print(f"{args.duration:g} s (or the request cap) per run after {args.warmup:g} s warm-up; "
              f"reply: {WORDS} words; DB: {env['DATABASE_URL'].split(':', 1)[0]}; "
              f"Redis: {'yes' if env.get('REDIS_URL') else 'no (Celery eager)'}; errors: direct / gateway")
        print()
        print("\n".join(main_table(results)))
        print(limits_line(results))
        print(responses_line(results))
        print()
        print("\n".join(detail_table(results)))
        print()
        records_ok = check_records(env, before, results)
        errors = sum(d["errors"] + d["warmup_errors"] + g["errors"] + g["warmup_errors"] for _, d, g in results)
        gateway_alive = gateway.proc.poll() is None
    finally:
        for service in reversed(started):
            service.stop()
    if errors or not records_ok or not gateway_alive:
        print(f"FAILED: {errors} failed requests, records {'ok' if records_ok else 'MISSING'}"
              f"{'' if gateway_alive else ', gateway died'} (logs in {BENCH_DIR})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
