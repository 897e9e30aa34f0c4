"""Gateway instructions per request, counted by valgrind's callgrind (``make bench-instructions``).

Why: on a shared 2-core VM the CPU seconds ``make bench`` reports move by ±30% between
runs, too much to tell a 5% change. callgrind counts the instructions the gateway process
executes instead: the same code on the same requests gives the same count within about
1.5% (the event loop's timers and the upstream's TCP chunking make the rest), whatever else
the machine is doing. It measures work, not latency: ``make bench`` stays the latency tool.

Method: the simulator, then one gateway process (uvicorn, one worker, uvloop + httptools)
under ``valgrind --tool=callgrind``; per front door, 40 warm-up calls, the counters zeroed
(``callgrind_control -z``), N sequential calls (one connection, concurrency 1), a dump
(``callgrind_control -d``): the instructions of every thread of the gateway for those N
calls, background tasks included, divided by N. ``--checkout`` measures another checkout
of the repository (its own ``.venv``; ``--checkout-database-url`` if its schema differs),
e.g. a ``git worktree`` of an older commit, against the same simulator: an A/B of two
commits that the machine's noise cannot blur.

Usage: ``python -m bench.instructions [--fronts chat,messages,...] [--requests 300]
[--checkout PATH] [--repeat 2]``; needs valgrind (Debian: ``apt-get install valgrind``),
DATABASE_URL (PostgreSQL) and optionally REDIS_URL, like ``make bench``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.gateway import BENCH_DIR, HOST, MAX_TOKENS, MODEL, PROMPT, ROOT, django_env, free_port

WARMUP = 40
START_TIMEOUT = 600.0  # seconds: Python and Django start some 50 times slower under callgrind


def front_request(front: str, keys: dict[str, str]) -> tuple[str, dict, dict]:
    """(path, headers, body) of one front door's call; ``-stream`` streams, ``-nostore`` (Responses)
    stores nothing, ``-limited`` (Chat Completions) goes through a key with limits."""
    stream = {"stream": True} if front.endswith("-stream") else {}
    if front.startswith("messages"):
        return "/v1/messages", {"x-api-key": keys["plain"], "anthropic-version": "2023-06-01"}, {
            "model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": PROMPT}], **stream}
    bearer = {"Authorization": f"Bearer {keys['limited' if 'limited' in front else 'plain']}"}
    if front.startswith("responses"):
        store = {"store": False} if "nostore" in front else {}
        return "/api/v1/responses", bearer, {"model": MODEL, "input": PROMPT, "max_output_tokens": MAX_TOKENS,
                                             **store, **stream}
    return "/api/v1/chat/completions", bearer, {
        "model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": PROMPT}], **stream}


def _manage(checkout: Path, env: dict, *args: str) -> str:
    done = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "manage.py", *args], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def _dumped_instructions(directory: Path) -> int:
    total = 0
    for path in directory.glob("callgrind.out.*"):
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total += int(line.split()[1])
                    break
    return total


def measure(checkout: Path, fronts: list[str], requests: int, sim_url: str, database_url: str) -> dict[str, int]:
    env = django_env(sim_url, database_url)
    _manage(checkout, env, "migrate", "-v0")
    keys = {"plain": _manage(checkout, env, "issue_key", "--team", "bench", "--name", "instructions"),
            "limited": _manage(checkout, env, "issue_key", "--team", "bench", "--name", "instructions-limited",
                               "--monthly-limit", "100000", "--rpm", "100000000", "--tpm", "2000000000")}
    port = free_port()
    out_dir = Path(tempfile.mkdtemp(prefix="callgrind-", dir=BENCH_DIR))
    log = open(BENCH_DIR / "instructions-gateway.log", "wb")  # noqa: SIM115 (closed below)
    gateway = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.out.%p",
         str(checkout / ".venv" / "bin" / "python"), "-m", "uvicorn", "tokenhub_portal.asgi:application",
         "--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
         "--log-level", "warning"], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
    counts: dict[str, int] = {}
    try:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=120) as client:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if gateway.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the gateway did not start (see {log.name})")
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(1)
            for front in fronts:
                path, headers, body = front_request(front, keys)
                for n in range(WARMUP + requests):
                    if n == WARMUP:
                        subprocess.run(["callgrind_control", "-z", str(gateway.pid)], check=True, capture_output=True)
                    response = client.post(path, json=body, headers=headers)
                    if response.status_code != 200:
                        raise RuntimeError(f"{front}: {response.status_code} {response.text[:300]}")
                for stale in out_dir.glob("callgrind.out.*"):
                    stale.unlink()
                subprocess.run(["callgrind_control", "-d", str(gateway.pid)], check=True, capture_output=True)
                counts[front] = _dumped_instructions(out_dir) // requests
                print(f"  {checkout.name or checkout}: {front}: {counts[front] / 1e6:.2f} M instructions/request",
                      file=sys.stderr, flush=True)
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=120)
        except subprocess.TimeoutExpired:
            gateway.kill()
        log.close()
        shutil.rmtree(out_dir, ignore_errors=True)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fronts", default="chat,chat-stream,chat-limited,messages,messages-stream,responses,"
                                            "responses-stream")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1, help="measure each front this many times (in turn)")
    parser.add_argument("--checkout", type=Path, action="append", default=[],
                        help="also measure this checkout (its own .venv); may be given more than once")
    parser.add_argument("--checkout-database-url",
                        help="the database of the other checkouts (their schema may differ; default DATABASE_URL)")
    args = parser.parse_args(argv)
    if not shutil.which("valgrind") or not os.environ.get("DATABASE_URL"):
        parser.error("needs valgrind on PATH and DATABASE_URL (PostgreSQL)")
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    fronts = args.fronts.split(",")
    sim_port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "simulator", "--host", HOST, "--port", str(sim_port)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[Path, dict[str, list[int]]] = {}
    try:
        time.sleep(1.0)
        for _ in range(args.repeat):
            for checkout in [ROOT, *args.checkout]:
                theirs = fronts if checkout == ROOT else [f for f in fronts if f.startswith("chat")]
                database_url = os.environ["DATABASE_URL"] if checkout == ROOT else (
                    args.checkout_database_url or os.environ["DATABASE_URL"])
                for front, count in measure(checkout.resolve(), theirs, args.requests, f"http://{HOST}:{sim_port}",
                                            database_url).items():
                    results.setdefault(checkout, {}).setdefault(front, []).append(count)
    finally:
        sim.terminate()
    print(f"\ninstructions per request (millions; {args.requests} sequential calls, callgrind, "
          f"{args.repeat} run(s) each: min–max)\n")
    print("| front door | " + " | ".join(str(c) for c in results) + " |")
    print("|---|" + "---:|" * len(results))
    for front in fronts:
        cells = []
        for checkout in results:
            counts = results[checkout].get(front)
            cells.append("–" if not counts else f"{min(counts) / 1e6:.2f}" if len(set(counts)) == 1 else
                         f"{min(counts) / 1e6:.2f}–{max(counts) / 1e6:.2f}")
        print(f"| {front} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
