"""Serves TokenHub in production: ``python -m tokenhub_portal.server --workers N``.

uvicorn's own workers (``uvicorn --workers N``) share one listening socket, and whichever
worker wakes first accepts every connection that is waiting. A burst of new keep-alive
connections (a load balancer filling its pool, an SDK client's pool under load) lands on
one worker and stays there while the others idle: ``make bench`` opened 32 connections
and one of two workers got all 32. Here each worker listens on a socket of its own with
SO_REUSEPORT, and the kernel spreads new connections across them by their addresses.
Measured on 2 cores at 32 concurrent calls: +20-25% requests/s, p50 11 → 8.5 ms.

Everything else is uvicorn's: its worker supervisor (restarts a worker that dies or
hangs, SIGTERM/SIGINT stop them gracefully, SIGHUP replaces them one by one), its server,
uvloop and httptools (never the plain asyncio loop: with ``--workers`` it keeps Nagle's
algorithm on, uvicorn #3149). With one worker there is no supervisor: uvicorn serves in
this process.
"""
from __future__ import annotations

import argparse
import socket
import sys

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

APP = "tokenhub_portal.asgi:application"


def _bound_socket(host: str, port: int, shared: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on host:port that other workers' sockets may share (SO_REUSEPORT)."""
    sock = _bound_socket(host, port, shared=True)
    sock.listen(backlog)
    return sock


def ensure_port_free(host: str, port: int) -> None:
    """Exits if anything listens on host:port already. SO_REUSEPORT would let this server
    join another one on the port (the previous deploy, still running) and share its traffic
    without a word; uvicorn's single socket refuses to start instead, and so do we."""
    try:
        _bound_socket(host, port, shared=False).close()
    except OSError as exc:
        sys.exit(f"cannot listen on {host}:{port}: {exc.strerror}")


class Worker(multiprocess.Process):
    """uvicorn's worker process, serving on a socket of its own instead of the shared one."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # in the worker process
        config = self.config
        super().target([listening_socket(config.host, config.port, config.backlog)])


def config_from(argv: list[str] | None = None) -> uvicorn.Config:
    parser = argparse.ArgumentParser(prog="python -m tokenhub_portal.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="one per core")
    parser.add_argument("--timeout-graceful-shutdown", type=int, default=None,
                        help="seconds; GRACEFUL_SECONDS + 5 bounds the portal's requests too")
    parser.add_argument("--timeout-keep-alive", type=int, default=5,
                        help="seconds an idle connection stays open; behind a load balancer, more than its idle "
                             "timeout (or it reuses connections we closed: 502s)")
    parser.add_argument("--forwarded-allow-ips", default=None,
                        help="proxies whose X-Forwarded-For/-Proto are trusted (default: $FORWARDED_ALLOW_IPS, "
                             "else the local host)")
    parser.add_argument("--ssl-certfile", default=None)
    parser.add_argument("--ssl-keyfile", default=None)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", action="store_true", help="one log line per request (off by default)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return uvicorn.Config(APP, host=args.host, port=args.port, workers=args.workers, loop="uvloop", http="httptools",
                          log_level=args.log_level, access_log=args.access_log,
                          timeout_graceful_shutdown=args.timeout_graceful_shutdown,
                          timeout_keep_alive=args.timeout_keep_alive, forwarded_allow_ips=args.forwarded_allow_ips,
                          ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)


def main(argv: list[str] | None = None) -> None:
    config = config_from(argv)
    if config.workers == 1:
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    ensure_port_free(config.host, config.port)
    # The supervisor builds (and rebuilds) its workers by this module-level name.
    multiprocess.Process = Worker
    multiprocess.Multiprocess(config, sockets=[]).run()


if __name__ == "__main__":
    main()
