"""tokenhub_portal.server: the gateway's worker processes as production runs them."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from bench.loadgen import process_tree

from .conftest import ROOT, _stop, start_gateway, wait_until

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


def _tcp_sockets(port: int):
    """(state, peer port, inode) of every IPv4 TCP socket on our side of `port` (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            yield fields[3], int(fields[2].split(":")[1], 16), fields[9]


def _served_by(port: int, client_ports: set[int], workers: list[int]) -> dict[int, int]:
    """client port → the worker process holding the server side of that connection."""
    owner_of = {inode: pid for pid in workers for inode in _socket_inodes(pid)}
    return {client: owner_of[inode] for state, client, inode in _tcp_sockets(port)
            if state == "01" and client in client_ports and inode in owner_of}  # 01: ESTABLISHED


def _listens(pid: int, port: int) -> bool:
    inodes = _socket_inodes(pid)
    return any(state == "0A" and inode in inodes for state, _, inode in _tcp_sockets(port))  # 0A: LISTEN


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _workers(proc) -> list[int]:
    return [pid for pid in process_tree(proc.pid)[1:] if b"resource_tracker" not in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _connections_per_worker(port: int, workers: list[int]) -> list[int]:
    """Opens CONNECTIONS connections at once (as a pool fills), one request on each; how many
    each worker holds."""
    clients = []
    try:
        for _ in range(CONNECTIONS):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        for client in clients:
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
        served = _served_by(port, {c.getsockname()[1] for c in clients}, workers)
        assert len(served) == CONNECTIONS
        return [list(served.values()).count(pid) for pid in workers]
    finally:
        for client in clients:
            client.close()


def test_connections_opened_together_are_spread_over_the_workers(django_db_setup, simulator_url):
    """uvicorn's own workers share one socket and the first to wake took every connection
    waiting (a load balancer's pool: all on one worker, the others idle). Each worker has a
    socket of its own here (SO_REUSEPORT), and the kernel spreads the connections."""
    url, proc = start_gateway(simulator_url, workers=2)
    try:
        workers = _workers(proc)
        assert len(workers) == 2
        per_worker = _connections_per_worker(_port(url), workers)
        # by the connections' addresses: all 16 on one worker has a chance of 2 in 65,536
        assert min(per_worker) > 0, per_worker
    finally:
        _stop(proc)


def test_a_worker_that_dies_is_replaced_by_one_with_its_own_socket(django_db_setup, simulator_url):
    """The supervisor restarts a dead worker; the replacement must listen too (a worker built
    with uvicorn's class would get no socket at all and serve nothing)."""
    url, proc = start_gateway(simulator_url, workers=2)
    try:
        first, survivor = _workers(proc)
        os.kill(first, signal.SIGKILL)
        replacement = wait_until(lambda: next((pid for pid in _workers(proc) if pid not in (first, survivor)), None),
                                 timeout=30)
        wait_until(lambda: _listens(replacement, _port(url)), timeout=30)
        per_worker = _connections_per_worker(_port(url), [survivor, replacement])
        assert min(per_worker) > 0, per_worker
    finally:
        _stop(proc)


def test_a_second_server_on_a_taken_port_refuses_to_start(django_db_setup, simulator_url):
    """A socket each (SO_REUSEPORT) must not let a second deploy join the first one's port."""
    url, proc = start_gateway(simulator_url, workers=2)
    try:
        second = subprocess.run([sys.executable, "-m", "tokenhub_portal.server", "--host", "127.0.0.1", "--port",
                                 str(_port(url)), "--workers", "2"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode != 0 and "cannot listen on 127.0.0.1" in second.stderr, second.stderr
    finally:
        _stop(proc)


def test_the_keep_alive_timeout_is_the_operators_to_set(django_db_setup, simulator_url):
    """Behind a load balancer idle connections must outlive its own idle timeout (else it reuses
    one we just closed: a 502); --timeout-keep-alive sets how long we keep them."""
    url, proc = start_gateway(simulator_url, workers=2, server_args=("--timeout-keep-alive", "1"))
    try:
        client = socket.create_connection(("127.0.0.1", _port(url)), timeout=10)
        with client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            response = b""
            while not response.endswith(b'{"status":"ok"}'):  # head and body may come apart
                response += client.recv(65536)
            assert response.startswith(b"HTTP/1.1 200")
            client.settimeout(3.5)  # uvicorn's default would keep it for 5
            assert client.recv(65536) == b""  # closed by the server after a second idle
    finally:
        _stop(proc)


def test_each_worker_serves_tls_when_given_a_certificate(django_db_setup, simulator_url, tmp_path):
    import datetime

    import httpx
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    url, proc = start_gateway(simulator_url, workers=2, scheme="https", server_args=(
        "--ssl-certfile", str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem")))
    try:
        assert url.startswith("https://")
        for _ in range(8):  # new connections: both workers' sockets
            assert httpx.get(f"{url}/healthz", verify=False, timeout=10).status_code == 200
    finally:
        _stop(proc)
