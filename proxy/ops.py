"""Operations endpoints: liveness (no I/O at all) and readiness (database, Redis)."""
from __future__ import annotations

import asyncio
import hmac

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpResponse

from . import metrics
from .api import json_response


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
    checks = {}
    try:
        await asyncio.wait_for(sync_to_async(_check_database)(), 2)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        try:
            await asyncio.wait_for(_check_redis(), 2)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


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
