"""tokenhub_portal.server: the gateway's worker processes as production runs them."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from bench.loadgen import process_tree

from .conftest import ROOT, _stop, start_gateway

CONNECTIONS = 16


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _served_by(port: int, client_ports: set[int], workers: list[int]) -> dict[int, int]:
    """client port → the worker process holding the server side of that connection."""
    owner_of = {inode: pid for pid in workers for inode in _socket_inodes(pid)}
    served = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and int(local.split(":")[1], 16) == port:  # ESTABLISHED, our side
            client = int(remote.split(":")[1], 16)
            if client in client_ports and inode in owner_of:
                served[client] = owner_of[inode]
    return served


def test_connections_opened_together_are_spread_over_the_workers(django_db_setup, simulator_url):
    """uvicorn's own workers share one socket and the first to wake took every connection
    waiting (a load balancer's pool: all on one worker, the others idle). Each worker has a
    socket of its own here (SO_REUSEPORT), and the kernel spreads the connections."""
    url, proc = start_gateway(simulator_url, workers=2)
    port = int(url.rsplit(":", 1)[1])
    clients = []
    try:
        workers = [pid for pid in process_tree(proc.pid)[1:] if b"resource_tracker" not in
                   Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
        for _ in range(CONNECTIONS):  # all connected before any is used, as a pool fills
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        for client in clients:
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
        served = _served_by(port, {c.getsockname()[1] for c in clients}, workers)
        assert len(served) == CONNECTIONS
        per_worker = [list(served.values()).count(pid) for pid in workers]
        # by the connections' addresses: all 16 on one worker has a chance of 2 in 65,536
        assert min(per_worker) > 0, per_worker
    finally:
        for client in clients:
            client.close()
        _stop(proc)


def test_a_second_server_on_a_taken_port_refuses_to_start(django_db_setup, simulator_url):
    """A socket each (SO_REUSEPORT) must not let a second deploy join the first one's port."""
    url, proc = start_gateway(simulator_url, workers=2)
    try:
        second = subprocess.run([sys.executable, "-m", "tokenhub_portal.server", "--host", "127.0.0.1", "--port",
                                 url.rsplit(":", 1)[1], "--workers", "2"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode != 0 and "cannot listen on 127.0.0.1" in second.stderr, second.stderr
    finally:
        _stop(proc)
