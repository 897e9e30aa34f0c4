"""The gateway's ORM work, with broken connections replaced.

The API is served outside Django's request cycle, so the `request_started`/`request_finished`
hooks that discard dead or expired connections (`close_old_connections`, which is what
makes CONN_HEALTH_CHECKS and CONN_MAX_AGE work) never run for it: after a PostgreSQL
restart the thread's connection would stay dead for the life of the process. Every ORM call
of the gateway goes through `run`, which does that housekeeping around the call and retries
once on a fresh connection. All of them are reads, so a retry is always safe.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from .errors import GatewayError

log = logging.getLogger(__name__)

T = TypeVar("T")
CONNECTION_ERRORS = (OperationalError, InterfaceError)


class DatabaseUnavailable(GatewayError):
    def __init__(self) -> None:
        super().__init__(503, "The gateway cannot reach its database right now; retry shortly.",
                         type="server_error", code="database_unavailable", headers={"Retry-After": "1"})


async def run(fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs) on Django's ORM thread; DatabaseUnavailable if the database
    cannot be reached even on a fresh connection."""
    return await sync_to_async(_run, thread_sensitive=True)(fn, args, kwargs)


def _run(fn, args, kwargs):
    if connection.in_atomic_block:  # a caller's transaction (tests run the app inside one): not ours to close
        return fn(*args, **kwargs)
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    except CONNECTION_ERRORS:
        log.info("database connection lost; retrying on a new one")
        connection.close()
        try:
            return fn(*args, **kwargs)
        except CONNECTION_ERRORS as exc:
            connection.close()
            log.warning("database unavailable: %s", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            raise DatabaseUnavailable() from None
    finally:
        close_old_connections()
