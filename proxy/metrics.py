"""Prometheus metrics for every gateway process.

uvicorn runs several worker processes, so metrics use prometheus_client's multiprocess
mode: each process writes its samples to memory-mapped files in one shared directory
(PROMETHEUS_MULTIPROC_DIR, set up by the ASGI entry, tokenhub_portal/asgi.py: by default
var/metrics/<uvicorn master pid>), and /metrics sums them. Counters survive a worker
restart; cost is a float here (observability, not money: invoices come from the Charge
ledger). A process not started through the ASGI entry (a management command, the test
runner) counts in memory and exposes only its own samples.
"""
from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from billing.tokens import KIND_COLUMNS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter("tokenhub_requests", "Chat completion requests", ["model", "status", "streamed"])
ERRORS = Counter("tokenhub_errors", "Failed requests by error type", ["model", "error"])
TOKENS = Counter("tokenhub_tokens", "Tokens by class", ["model", "kind"])
COST = Counter("tokenhub_cost_usd", "Billed cost in USD (float; the ledger is exact)", ["model"])
LATENCY = Histogram("tokenhub_request_seconds", "Time to the end of the response", ["model", "streamed"],
                    buckets=LATENCY_BUCKETS)
TTFT = Histogram("tokenhub_ttft_seconds", "Time to the first content chunk of a stream", ["model"],
                 buckets=LATENCY_BUCKETS)
UPSTREAM_ERRORS = Counter("tokenhub_upstream_errors", "Errors answered by the upstream API", ["status"])
# Summed over the live processes: records that answered but wait on local disk for the database.
SPOOLED = Gauge("tokenhub_spooled_records", "Request records in the local spool, waiting for the database",
                multiprocess_mode="livesum")


def observe(model: str, fields: dict, cost) -> None:
    """One finished call: its canonical model id ("unknown" when the name did not resolve,
    so client input never becomes a label) and the fields of its request record."""
    streamed = "true" if fields["streamed"] else "false"
    REQUESTS.labels(model, fields["status"], streamed).inc()
    if fields["error_type"]:
        ERRORS.labels(model, fields["error_type"]).inc()
    for kind, column in KIND_COLUMNS:
        if fields[column]:
            TOKENS.labels(model, kind).inc(fields[column])
    if cost:
        COST.labels(model).inc(float(cost))
    LATENCY.labels(model, streamed).observe(fields["latency_ms"] / 1000)
    if fields["ttft_ms"] is not None:
        TTFT.labels(model).observe(fields["ttft_ms"] / 1000)


def upstream_error(status: int) -> None:
    UPSTREAM_ERRORS.labels(str(status)).inc()


def spool_depth(records: int) -> None:
    SPOOLED.set(records)


def exposition() -> bytes:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
