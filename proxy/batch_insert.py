"""Rows the gateway writes on the hot path, batched and off the event loop's critical work.

Every caller awaits its own row's commit (so what the client is told exists, exists), but
concurrent calls share one multi-row INSERT. On PostgreSQL the batch goes through
psycopg's async driver in autocommit (no thread hop, no ORM); other databases (SQLite for
``make run``) use the ORM on one thread of its own. One bad row cannot fail its batch: a
failed batch is retried row by row.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import JSONField, Model
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

CONNECTION_ERRORS = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


class BatchInserter:
    def __init__(self, model: type[Model]) -> None:
        self._model = model
        self._fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in self._fields)
        self._head = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES "
        self._row = "(" + ", ".join(["%s"] * len(self._fields)) + ")"
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._conn = None
        self._loop = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"insert-{model._meta.model_name}")

    async def insert(self, fields: dict) -> None:
        """Queue one row (attribute names → values) and wait until it is committed."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run())
        future = loop.create_future()
        self._pending.append((fields, future))
        self._wakeup.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._store_batch(batch)

    async def _store_batch(self, batch: list[tuple[dict, asyncio.Future]]) -> None:
        rows = [fields for fields, _ in batch]
        try:
            try:
                await self._store(rows)
            except CONNECTION_ERRORS:  # e.g. the first use of a connection a database restart dropped
                await self._store(rows)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("could not insert a %s row", self._model._meta.model_name)
                _resolve(batch, exc)
                return
            for item in batch:
                await self._store_batch([item])
            return
        _resolve(batch, None)

    async def _store(self, rows: list[dict]) -> None:
        if connection.vendor == "postgresql":
            await self._insert_postgres(rows)
        else:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._insert_orm, rows)

    async def _insert_postgres(self, rows: list[dict]) -> None:
        conn = await self._connection()
        values = []
        for fields in rows:
            for f in self._fields:
                value = fields[f.attname] if f.attname in fields else f.get_default()
                values.append(Jsonb(value) if isinstance(f, JSONField) and value is not None else value)
        try:
            await conn.execute(self._head + ", ".join([self._row] * len(rows)), values, prepare=len(rows) <= 8)
        except psycopg.Error:
            await conn.close()  # the next batch reconnects
            raise

    async def _connection(self):
        loop = asyncio.get_running_loop()
        if self._conn is None or self._conn.closed or self._loop is not loop:
            db = settings.DATABASES["default"]
            params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"],
                      "host": db["HOST"], "port": db["PORT"], "connect_timeout": settings.DATABASE_CONNECT_TIMEOUT}
            self._conn = await psycopg.AsyncConnection.connect(
                autocommit=True, **{k: str(v) for k, v in params.items() if v})
            self._loop = loop
        return self._conn

    def _insert_orm(self, rows: list[dict]) -> None:
        try:
            with transaction.atomic():
                self._model.objects.bulk_create([self._model(**fields) for fields in rows])
        except Exception:
            connection.close()  # the next batch reconnects instead of reusing a broken connection
            raise


def _resolve(group: list[tuple[dict, asyncio.Future]], error: Exception | None) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(error) if error else future.set_result(None)
