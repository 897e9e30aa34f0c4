"""The benchmark's load generator and /proc helpers (see bench/gateway.py for the method).

Run as its own process by bench/gateway.py: ``python -m bench.loadgen`` reads one JSON run
spec on stdin and prints one JSON result line on stdout. It imports nothing heavier than
uvloop and orjson, so it starts in a fraction of a second and stays out of the way.

The HTTP/1.1 client is an ``asyncio.Protocol`` on uvloop: one keep-alive connection per
concurrent worker, requests pre-serialised once, responses parsed incrementally inside
``data_received`` (status line, headers, Content-Length or chunked bodies). A response
costs one wake-up of the waiting coroutine, however many chunks it arrives in, and the
time of the first content chunk is taken in ``data_received`` when its bytes arrive.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import socket
import sys
import time
from dataclasses import dataclass, field

import orjson

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT = 30.0  # seconds for one whole response
SETTLE_SECONDS = 0.3  # after the last response, before the final CPU sample (background work)
MAX_ERROR_SAMPLES = 5

# First chunk carrying a text delta. Gateway (OpenAI SSE): "content":" followed by a
# non-quote, so the role chunk ("content":"") does not count. Direct: content_block_delta.
GATEWAY_CONTENT = re.compile(rb'"content":"[^"]')
DIRECT_CONTENT = re.compile(rb"event: content_block_delta")
RESPONSES_CONTENT = re.compile(rb"event: response.output_text.delta")
GATEWAY_STREAM_END = b"data: [DONE]"
DIRECT_STREAM_END = b"event: message_stop"
RESPONSES_STREAM_END = b"event: response.completed"  # its data (the whole response) follows
# Per wire format: (stream content marker, stream end marker and how far from the end it
# starts, the key a plain answer must have)
KINDS = {
    "anthropic": (DIRECT_CONTENT, DIRECT_STREAM_END, 200, "content"),
    "openai": (GATEWAY_CONTENT, GATEWAY_STREAM_END, 200, "choices"),
    "responses": (RESPONSES_CONTENT, RESPONSES_STREAM_END, 8192, "output"),
}


# --------------------------------------------------------------------------- /proc


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads) in clock ticks, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # fields[0] is field 3 (state)
    return int(fields[11]) + int(fields[12])


def _parent_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    return children


def process_tree(root: int) -> list[int]:
    """root and all its descendants (uvicorn master + workers), found via each PPid
    (/proc/<pid>/task/*/children needs CONFIG_PROC_CHILDREN, which is often missing)."""
    children = _parent_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def sample_cpu(roots: dict[str, int]) -> dict[str, dict[int, int]]:
    """{group: {pid: ticks}} for every process in each root's tree."""
    samples = {}
    for group, root in roots.items():
        ticks = ((pid, cpu_ticks(pid)) for pid in process_tree(root))
        samples[group] = {pid: t for pid, t in ticks if t is not None}
    return samples


def cpu_seconds(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]) -> dict[str, float]:
    """CPU seconds used per group between two samples (processes present in both)."""
    return {
        group: sum(t - before[group][pid] for pid, t in after[group].items() if pid in before[group]) / CLOCK_TICKS
        for group in before
    }


# --------------------------------------------------------------------------- HTTP/1.1


class ResponseError(Exception):
    pass


@dataclass(slots=True)
class Response:
    status: int
    body: bytearray
    first_content: float | None  # perf_counter() when the first content bytes arrived


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, response parsed as it
    arrives. ``content`` (a regex) marks the body bytes whose arrival time is recorded."""

    def __init__(self, content: re.Pattern | None) -> None:
        self._content = content
        self._transport: asyncio.Transport | None = None
        self._future: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._buf = bytearray()
        self.closed = False
        self._reset()

    def _reset(self) -> None:
        """Parser state for a new response."""
        self._state = "head"  # head -> length | (size -> chunk)* -> trailer
        self._status = 0
        self._body = bytearray()
        self._remaining = 0
        self._scanned = 0
        self._first: float | None = None
        self._keep_alive = True

    @classmethod
    async def open(cls, host: str, port: int, content: re.Pattern | None) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: cls(content), host, port)
        return conn

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(ResponseError(f"connection closed mid-response ({exc or 'EOF'})"))

    def data_received(self, data: bytes) -> None:
        if self._future is None:
            self._fail(ResponseError("unsolicited bytes"))
            self.close()
            return
        self._buf += data
        try:
            self._parse()
        except (ValueError, ResponseError) as exc:
            self._fail(ResponseError(f"malformed response: {exc}"))
            self.close()

    # requests
    def request(self, raw: bytes) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        self._future = loop.create_future()
        self._timer = loop.call_later(REQUEST_TIMEOUT, self._on_timeout)
        self._buf.clear()
        self._reset()
        self._transport.write(raw)
        return self._future

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _on_timeout(self) -> None:
        self._fail(ResponseError(f"timeout after {REQUEST_TIMEOUT:.0f}s"))
        self.close()

    def _fail(self, exc: Exception) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_exception(exc)
        self._finish_request()

    def _finish_request(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._future = None

    def _done(self) -> None:
        future = self._future
        if not self._keep_alive:
            self.closed = True
        self._finish_request()
        future.set_result(Response(self._status, self._body, self._first))
        if self.closed:
            self._transport.close()

    # the parser: a small state machine over self._buf
    def _parse(self) -> None:
        buf = self._buf
        while self._future is not None:
            if self._state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                self._head(bytes(buf[:end]))
                del buf[:end + 4]
            elif self._state == "length":
                if len(buf) < self._remaining:
                    return
                self._content_bytes(buf[:self._remaining])
                del buf[:self._remaining]
                self._done()
            elif self._state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                self._remaining = int(bytes(buf[:end]).split(b";", 1)[0], 16)
                del buf[:end + 2]
                self._state = "chunk" if self._remaining else "trailer"
            elif self._state == "chunk":
                if len(buf) < self._remaining + 2:
                    return
                if buf[self._remaining:self._remaining + 2] != b"\r\n":
                    raise ResponseError("chunk not followed by CRLF")
                self._content_bytes(buf[:self._remaining])
                del buf[:self._remaining + 2]
                self._state = "size"
            else:  # trailer: an empty line, or trailer fields then an empty line
                if buf[:2] == b"\r\n":
                    del buf[:2]
                else:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        return
                    del buf[:end + 4]
                self._done()

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, status = lines[0].split(b" ", 2)[:2]
        if not version.startswith(b"HTTP/1."):
            raise ResponseError(f"bad status line {lines[0][:60]!r}")
        self._status = int(status)
        chunked, length = False, None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                self._keep_alive = value != b"close"
        if chunked:
            self._state = "size"
        elif length is not None:
            self._state, self._remaining = "length", length
        else:
            raise ResponseError("neither Content-Length nor chunked")

    def _content_bytes(self, data) -> None:
        self._body += data
        if self._first is None and self._content is not None:
            # search from a little before the new bytes: a marker may span two chunks
            if self._content.search(self._body, max(0, self._scanned - 32)):
                self._first = time.perf_counter()
            self._scanned = len(self._body)


# --------------------------------------------------------------------------- the load


@dataclass
class Target:
    """What to send and how to judge the answer."""

    host: str
    port: int
    raw_request: bytes
    kind: str  # the answer's wire format: "anthropic", "openai" (Chat Completions) or "responses"
    stream: bool
    min_chunks: int

    @classmethod
    def from_spec(cls, spec: dict) -> Target:
        body = orjson.dumps(spec["body"])
        headers = {"Host": f"{spec['host']}:{spec['port']}", "Content-Type": "application/json",
                   "Content-Length": str(len(body)), **spec["headers"]}
        head = f"POST {spec['path']} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return cls(spec["host"], spec["port"], head.encode("latin-1") + b"\r\n" + body, spec["kind"],
                   bool(spec["body"].get("stream")), spec["min_chunks"])

    @property
    def content_marker(self) -> re.Pattern | None:
        if not self.stream:
            return None
        return KINDS[self.kind][0]

    def problem(self, response: Response) -> str | None:
        """Why the response is not a correct answer, or None."""
        if response.status != 200:
            return f"HTTP {response.status}: {bytes(response.body[:200])!r}"
        if self.stream:
            return self._stream_problem(response)
        try:
            doc = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            return f"invalid JSON body: {bytes(response.body[:200])!r}"
        key = KINDS[self.kind][3]
        return None if isinstance(doc, dict) and doc.get(key) else f"no {key!r} in {bytes(response.body[:200])!r}"

    def _stream_problem(self, response: Response) -> str | None:
        _, end, tail, _ = KINDS[self.kind]
        chunks = len(self.content_marker.findall(response.body))
        if chunks < self.min_chunks:
            return f"{chunks} content chunks < {self.min_chunks}"
        if end not in response.body[-tail:]:
            return f"stream does not end with {end!r}"
        if response.first_content is None:
            return "no content chunk"
        return None


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(message)


class Budget:
    """Stops a phase after `count` requests or at `deadline`, whichever comes first."""

    def __init__(self, count: int, seconds: float) -> None:
        self.left = count
        self.deadline = time.perf_counter() + seconds

    def take(self) -> bool:
        if self.left <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.left -= 1
        return True


class Worker:
    """One concurrent client: one keep-alive connection, requests back to back."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.conn: HttpConnection | None = None

    async def run(self, budget: Budget, tally: Tally) -> None:
        while budget.take():
            await self.one(tally)

    async def one(self, tally: Tally) -> None:
        target = self.target
        start = time.perf_counter()
        try:
            if self.conn is None or self.conn.closed:
                self.conn = await HttpConnection.open(target.host, target.port, target.content_marker)
            response = await self.conn.request(target.raw_request)
        except (OSError, ResponseError) as exc:
            tally.error(f"{type(exc).__name__}: {exc}")
            self.close()
            await asyncio.sleep(0.01)  # do not spin on a refused connection
            return
        end = time.perf_counter()
        problem = target.problem(response)
        if problem:
            tally.error(problem)
            return
        tally.latencies.append(end - start)
        if response.first_content is not None:
            tally.ttfts.append(response.first_content - start)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


async def run_phase(workers: list[Worker], count: int, seconds: float) -> tuple[Tally, float]:
    budget, tally = Budget(count, seconds), Tally()
    start = time.perf_counter()
    await asyncio.gather(*(w.run(budget, tally) for w in workers))
    return tally, time.perf_counter() - start


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1] * 1000


def summarize(tally: Tally, elapsed: float) -> dict:
    ok = len(tally.latencies)
    return {
        "ok": ok, "errors": tally.errors, "error_samples": tally.error_samples,
        "seconds": elapsed, "rps": ok / elapsed if elapsed > 0 else 0.0,
        "p50": percentile(tally.latencies, 50), "p99": percentile(tally.latencies, 99),
        "ttft_p50": percentile(tally.ttfts, 50), "ttft_p99": percentile(tally.ttfts, 99),
    }


async def run(spec: dict) -> dict:
    """Warm-up phase, then (all connections idle) the measured phase, CPU sampled around it."""
    target = Target.from_spec(spec)
    workers = [Worker(target) for _ in range(spec["concurrency"])]
    roots = spec.get("cpu_roots", {})
    try:
        warm, _ = await run_phase(workers, spec["warmup_requests"], spec["warmup_seconds"])
        cpu_before, own_before = sample_cpu(roots), time.process_time()
        tally, elapsed = await run_phase(workers, spec["requests"], spec["seconds"])
        own_cpu = time.process_time() - own_before
        await asyncio.sleep(SETTLE_SECONDS)
        cpu = cpu_seconds(cpu_before, sample_cpu(roots))
    finally:
        for w in workers:
            w.close()
    cpu["loadgen"] = own_cpu
    result = summarize(tally, elapsed)
    result.update(warmup_ok=len(warm.latencies), warmup_errors=warm.errors,
                  warmup_error_samples=warm.error_samples, cpu_seconds=cpu,
                  maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return result


def main() -> None:
    import uvloop

    spec = json.load(sys.stdin)
    result = uvloop.run(run(spec))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
