"""Operations endpoints: liveness (no I/O at all) and readiness (database, Redis, spool)."""
from __future__ import annotations

import asyncio
import hmac
import os
from pathlib import Path

import redis.asyncio as aioredis
from django.conf import settings
from django.db import connection
from django.http import HttpResponse

from . import db, metrics
from .api import json_response
from .runtime import current


async def healthz(request):
    return json_response({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _check_redis() -> None:
    client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def readyz(request):
    """200 when the process can serve calls. With the database down it still can (cached keys
    and model table; records go to the spool), so that is 200 "degraded", not 503: a load
    balancer must not take every replica out at once for an outage the spool absorbs."""
    checks = {}
    try:
        await asyncio.wait_for(db.run(_check_database), 2)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        try:
            await asyncio.wait_for(_check_redis(), 2)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    spool = {"records": current().writer.spool_depth, "writable": _spool_writable()}
    if all(v == "ok" for v in checks.values()):
        status = "ok"
    elif spool["writable"] and all(v == "ok" for k, v in checks.items() if k != "database"):
        status = "degraded"
    else:
        status = "unavailable"
    return json_response({"status": status, "checks": checks, "spool": spool},
                         status=503 if status == "unavailable" else 200)


def _spool_writable() -> bool:
    path = Path(settings.SPOOL_DIR)
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK)


def metrics_view(request):
    """Prometheus exposition (a Django view, so a staff member's session works as well as
    the scrape token)."""
    token = settings.METRICS_TOKEN
    presented = request.headers.get("Authorization", "")
    allowed = (request.user.is_authenticated and request.user.is_staff) or (
        token is not None and hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()))
    if not allowed:
        return HttpResponse("Staff login or a metrics token required.\n", status=403, content_type="text/plain")
    return HttpResponse(metrics.exposition(), content_type="text/plain; version=0.0.4; charset=utf-8")
