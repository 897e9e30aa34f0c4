"""Writes request records in batches, off the event loop.

Each request awaits its own record's commit before the client sees the end of its
response, so a record is never lost to a crash after the answer went out; concurrent
requests share one INSERT. Pricing is not the gateway's job: a Celery beat task prices
committed records every few seconds (billing.tasks.price_finished_requests), so the hot
path never touches the broker. Only without a broker (eager mode, `make run`) does the
writer price its own batches, off the event loop.

When the database cannot take a batch (down, restarting, unreachable) the records go to
a local fsync-ed spool (proxy.spool) instead, so the call still answers: `write` returns
once the record is durable, in the database or on disk. A background task replays the
spool when the database is back, with INSERT ... ON CONFLICT DO NOTHING (the generation id
is unique, so a record replayed twice is stored once and charged once), and only then
settles the spooled calls' reservations (proxy.limits.hold/release): until their records
are in the ledger, their worst case stays held.

A successful Responses API call the client asked to ``store`` carries its stored response
in the record's fields (``STORED_RESPONSE``): both rows go in the same statement, commit
and spool line, so storing costs no second commit on the hot path and survives an outage
like the record does."""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.db.models import DateTimeField, JSONField
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing.models import RequestRecord, StoredResponse
from billing.tasks import price_finished_requests
from tokenhub_portal.accounts.models import ApiKey

from . import limits, metrics
from .limits import LimitStore
from .spool import Segment, Spool

log = logging.getLogger(__name__)

LAST_USED_EVERY = 60.0  # seconds between last_used updates of one key
WRITE_TIMEOUT = 10.0    # seconds a batch may take before its records go to the spool
REPLAY_BATCH = 500      # records per INSERT when replaying the spool
REPLAY_EVERY = 1.0      # seconds between replay attempts while records are spooled
ORPHAN_SCAN_EVERY = 15.0  # seconds between looks for segments of processes that are gone
STORED_RESPONSE = "stored_response"  # record field: a StoredResponse row (attnames) committed with it


def unavailable(exc: BaseException) -> bool:
    """The database could not be reached (as opposed to refusing this data)."""
    return isinstance(exc, (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError,
                            psycopg.errors.ReadOnlySqlTransaction,  # a failover's standby, not yet promoted
                            TimeoutError, ConnectionError))


def _default_factory(field) -> bool:
    return field.has_default() and callable(field.default)


class _Rows:
    """The multi-row INSERT ... ON CONFLICT DO NOTHING of one model, with PostgreSQL's own
    ``$n`` placeholders for a raw cursor: psycopg caches its ``%s`` conversion only for
    statements of up to 50 parameters, so with ``%s`` every batch (about 40 per row) was
    re-parsed with a regular expression, over 10% of the gateway's CPU per call."""

    def __init__(self, model, unique: str) -> None:
        quote = connection.ops.quote_name
        self.fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        # per column: (attribute, JSON?, default factory or None, default value): Field.get_default()
        # per missing column per row was a third of this class's time
        self._columns = [(f.attname, isinstance(f, JSONField), f.default if _default_factory(f) else None,
                          None if _default_factory(f) else f.get_default()) for f in self.fields]
        columns = ", ".join(quote(f.column) for f in self.fields)
        self._head = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES "
        self._tail = f" ON CONFLICT ({quote(model._meta.get_field(unique).column)}) DO NOTHING"
        self._sql: dict[tuple[int, int], str] = {}

    def sql(self, count: int, first: int = 1) -> str:
        """The statement for ``count`` rows, its parameters numbered from ``first``."""
        sql = self._sql.get((count, first))
        if sql is None:
            width = len(self.fields)
            rows = ("(" + ", ".join(f"${first + r * width + c}" for c in range(width)) + ")" for r in range(count))
            sql = self._head + ", ".join(rows) + self._tail
            if count <= 64:  # the sizes concurrent calls make; replays' big batches are rare
                self._sql[(count, first)] = sql
        return sql

    def values(self, rows: list[dict]) -> list:
        values = []
        for fields in rows:
            for name, is_json, factory, default in self._columns:
                value = fields[name] if name in fields else factory() if factory is not None else default
                # JSON as text of no declared type: PostgreSQL takes it as the column's jsonb, and
                # psycopg's per-value Jsonb dumper (a Python call per value) is skipped
                values.append(orjson.dumps(value).decode() if is_json and value is not None else value)
        return values


class PostgresSink:
    """Inserts on the event loop with psycopg's async driver: one multi-row INSERT per
    batch in autocommit (one statement, one transaction, one WAL flush) — no thread hop,
    no ORM, about a third of the latency of the ORM path per batch. Stored responses ride
    in the same statement (a data-modifying CTE). ON CONFLICT on the generation id (and the
    response id): a batch whose outcome was unknown (the connection broke) can be written
    again, from the spool, without a duplicate."""

    def __init__(self) -> None:
        self._records = _Rows(RequestRecord, "generation_id")
        self._stored = _Rows(StoredResponse, "response_id")
        self._touch = f"UPDATE {connection.ops.quote_name(ApiKey._meta.db_table)} SET last_used = now() WHERE id = ANY($1)"
        self._conn = None
        self._loop = None

    async def _connection(self):
        loop = asyncio.get_running_loop()
        if self._conn is None or self._conn.closed or self._loop is not loop:
            db = settings.DATABASES["default"]
            params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"],
                      "host": db["HOST"], "port": db["PORT"], "connect_timeout": settings.DATABASE_CONNECT_TIMEOUT}
            self._conn = await psycopg.AsyncConnection.connect(
                autocommit=True, cursor_factory=psycopg.AsyncRawCursor, **{k: str(v) for k, v in params.items() if v})
            self._loop = loop
        return self._conn

    async def insert(self, batch: list[dict], stale_keys: list[int]) -> None:
        sql, params = self._records.sql(len(batch)), self._records.values(batch)
        stored = [f[STORED_RESPONSE] for f in batch if f.get(STORED_RESPONSE)]
        if stored:
            sql = f"WITH records AS ({sql}) {self._stored.sql(len(stored), len(params) + 1)}"
            params += self._stored.values(stored)
        try:
            conn = await self._connection()
            await conn.execute(sql, params, prepare=len(batch) <= 8)
            if stale_keys:
                await conn.execute(self._touch, [stale_keys])
        except BaseException:  # a psycopg error, or cancelled by a timeout mid-statement
            await self.close()  # the next batch reconnects
            raise

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                if self._loop is asyncio.get_running_loop():
                    await conn.close()
                else:  # opened on a loop that is gone (tests run several): close the socket as is
                    conn.pgconn.finish()
            except Exception:
                pass


class RecordWriter:
    def __init__(self, limits_store: LimitStore | None = None) -> None:
        self._limits = limits_store or LimitStore()  # where spooled calls' settles wait
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._storing = 0  # batches being written right now
        self._touched: dict[int, float] = {}
        self._pricing: set[asyncio.Task] = set()
        self._sink: PostgresSink | None = None
        # Other databases (SQLite for `make run`): the ORM on one thread of its own.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-writer")
        self._spool: Spool | None = None
        self._spooling = False  # the database is known to be down: straight to the spool
        self._locks: tuple[asyncio.AbstractEventLoop, asyncio.Lock, asyncio.Lock] | None = None
        self._replayer: asyncio.Task | None = None
        self._last_orphan_scan = 0.0

    @property
    def spool(self) -> Spool:
        if self._spool is None:
            self._spool = Spool(settings.SPOOL_DIR)
        return self._spool

    @property
    def spool_depth(self) -> int:
        return self._spool.depth if self._spool is not None else 0

    async def write(self, fields: dict) -> None:
        """Returns once the record is durable: committed, or fsync-ed to the spool."""
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
            if not batch:
                continue
            self._storing += 1
            try:
                await self._store_batch(batch)
            finally:
                self._storing -= 1
            if settings.CELERY_TASK_ALWAYS_EAGER and not self._spooling:
                self._price_soon()

    def _price_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(sync_to_async(price_now, thread_sensitive=False)())
        self._pricing.add(task)
        task.add_done_callback(self._pricing.discard)

    async def _store_batch(self, batch: list[tuple[dict, asyncio.Future]]) -> None:
        """One INSERT for the batch; if it fails, row by row, so one bad record cannot
        take other requests' records down with it. If the database cannot be reached
        (even on a new connection), the batch goes to the spool."""
        if self._spooling:
            await self._to_spool(batch)
            return
        records = [f for f, _ in batch]
        try:
            try:
                await asyncio.wait_for(self._store(records), WRITE_TIMEOUT)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                # e.g. the first use of a connection the database dropped when it restarted
                await asyncio.wait_for(self._store(records), WRITE_TIMEOUT)
        except Exception as exc:
            if unavailable(exc):
                log.warning("database unavailable (%s); spooling request records", type(exc).__name__)
                self._spooling = True
                await self._to_spool(batch)
                return
            if len(batch) == 1:
                fields = batch[0][0]
                if fields.pop(STORED_RESPONSE, None):  # e.g. a NUL in the text: the record matters more
                    log.exception("could not store response %s; recording the call without it",
                                  fields.get("generation_id"))
                    await self._store_batch(batch)
                    return
                log.exception("could not write request record %s", fields.get("generation_id"))
                _resolve(batch, exc)
                return
            log.warning("a batch of %d request records failed; writing them one by one", len(batch))
            for item in batch:
                await self._store_batch([item])
            return
        _resolve(batch, None)

    async def _store(self, batch: list[dict]) -> None:
        now = time.monotonic()
        stale = sorted({f["api_key_id"] for f in batch if now - self._touched.get(f["api_key_id"], -1e9) > LAST_USED_EVERY})
        await self._insert(batch, stale)
        for key_id in stale:
            self._touched[key_id] = now

    async def _insert(self, batch: list[dict], stale_keys: list[int], *, replay: bool = False) -> None:
        if self._sink is None and connection.vendor == "postgresql":
            # (once: each new task touching django.db.connection builds a connection wrapper, ~0.1 ms)
            self._sink = PostgresSink()
        if self._sink is not None:
            await self._sink.insert(batch, stale_keys)
        else:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._orm_insert, batch, stale_keys, replay)

    def _orm_insert(self, batch: list[dict], stale_keys: list[int], replay: bool = False) -> None:
        try:
            with transaction.atomic():
                # replayed records may be in already (written, then the answer was lost)
                RequestRecord.objects.bulk_create(
                    [RequestRecord(**{k: v for k, v in f.items() if k != STORED_RESPONSE}) for f in batch],
                    ignore_conflicts=replay)
                StoredResponse.objects.bulk_create(
                    [StoredResponse(**f[STORED_RESPONSE]) for f in batch if f.get(STORED_RESPONSE)],
                    ignore_conflicts=replay)
                if stale_keys:
                    ApiKey.objects.filter(pk__in=stale_keys).update(last_used=timezone.now())
        except Exception:
            connection.close()  # the next batch reconnects instead of reusing a broken connection
            raise

    # --- the spool ---------------------------------------------------------------------

    def _lock(self, which: int) -> asyncio.Lock:
        """1: appends vs sealing; 2: one replay at a time (bound to the running loop)."""
        loop = asyncio.get_running_loop()
        if self._locks is None or self._locks[0] is not loop:
            self._locks = (loop, asyncio.Lock(), asyncio.Lock())
        return self._locks[which]

    async def _to_spool(self, batch: list[tuple[dict, asyncio.Future]]) -> None:
        records = [f for f, _ in batch]
        try:
            async with self._lock(1):
                await asyncio.to_thread(self.spool.append, records)
        except OSError as exc:  # the disk cannot take it either: the call fails, as before the spool
            log.exception("could not spool %d request records", len(records))
            _resolve(batch, exc)
            return
        # Their reservations are settled once the records are in the ledger (after replay).
        limits.hold(self._limits, (r["generation_id"] for r in records))
        metrics.spool_depth(self.spool.depth)
        _resolve(batch, None)
        self._ensure_replayer()

    def _ensure_replayer(self) -> None:
        loop = asyncio.get_running_loop()
        if self._replayer is None or self._replayer.done() or self._replayer.get_loop() is not loop:
            self._replayer = loop.create_task(self._replay_forever())

    async def _replay_forever(self) -> None:
        """While records are spooled, try to replay them every REPLAY_EVERY seconds; now
        and then, look for segments that processes which are gone left behind."""
        while True:
            try:
                await self.replay()
            except Exception as exc:
                if unavailable(exc):  # still down: said once when spooling began
                    log.debug("spool replay: database still unavailable (%s)", type(exc).__name__)
                else:
                    log.warning("spool replay failed; retrying", exc_info=True)
            await asyncio.sleep(REPLAY_EVERY if self.spool_depth or self._spooling else ORPHAN_SCAN_EVERY)

    async def replay(self) -> int:
        """Write spooled records to the database; returns how many were replayed. Raises
        if the database is still unavailable (what is left stays spooled)."""
        async with self._lock(2):
            return await self._replay()

    async def _replay(self) -> int:
        now = time.monotonic()
        if now - self._last_orphan_scan >= ORPHAN_SCAN_EVERY or self._spooling:
            self._last_orphan_scan = now
            await asyncio.to_thread(self.spool.claim_orphans)
        replayed = 0
        while True:
            async with self._lock(1):
                # older segments first; the one being appended to only when they are done (so an
                # outage does not leave a new segment behind every retry)
                segments = self.spool.sealed() or self.spool.seal()
                if not segments:
                    # Nothing left: new records go to the database again. (Appends and this
                    # check are serialised by the lock, so no record is stranded in a segment.)
                    if self._spooling:
                        log.warning("database back; spool replayed")
                    self._spooling = False
                    metrics.spool_depth(0)
                    return replayed
            for segment in segments:
                replayed += await self._replay_segment(segment)
                metrics.spool_depth(self.spool.depth)

    async def _replay_segment(self, segment: Segment) -> int:
        records = [_decode(r) for r in await asyncio.to_thread(Spool.read, segment)]
        rejected = []
        for start in range(0, len(records), REPLAY_BATCH):
            chunk = records[start:start + REPLAY_BATCH]
            try:
                await asyncio.wait_for(self._insert(chunk, [], replay=True), WRITE_TIMEOUT)
            except Exception as exc:
                if unavailable(exc):
                    raise
                for record in chunk:  # one record the database refuses must not block the rest
                    try:
                        await asyncio.wait_for(self._insert([record], [], replay=True), WRITE_TIMEOUT)
                    except Exception as row_exc:
                        if unavailable(row_exc):
                            raise
                        rejected.append(record)
        await asyncio.to_thread(self.spool.reject, segment, rejected)
        await asyncio.to_thread(self.spool.done, segment)
        log.warning("replayed %d spooled request records from %s", len(records) - len(rejected), segment.path.name)
        if segment.orphan:
            # Their process is gone with its reservations' settles: let the ledger decide.
            await limits.recount(self._limits, records)
        else:
            limits.release(self._limits, segment.generation_ids)
        if settings.CELERY_TASK_ALWAYS_EAGER:
            self._price_soon()
        return len(records)

    async def recover(self, timeout: float = 30.0) -> None:
        """At start-up: replay what processes before this one left in the spool, before
        serving (bounded: if the database is down, the background task keeps trying)."""
        await asyncio.to_thread(self.spool.claim_orphans)
        self._last_orphan_scan = time.monotonic()
        if self.spool_depth:
            try:
                await asyncio.wait_for(self.replay(), timeout)
            except Exception:
                self._spooling = True
                log.warning("could not replay the spool at start-up; will keep trying", exc_info=True)
        metrics.spool_depth(self.spool_depth)
        self._ensure_replayer()  # keeps trying, and adopts segments of siblings that die later

    async def drain(self, timeout: float = 5.0) -> None:
        """Let queued writes and pricing hand-offs finish, replay the spool if the database
        is back, and release the spool (ASGI shutdown). What cannot be replayed in time
        stays in the spool for the next process."""
        while self._pending or self._storing:
            await asyncio.sleep(0.01)
        replayer = self._replayer
        if replayer is not None and not replayer.done() and replayer.get_loop() is asyncio.get_running_loop():
            replayer.cancel()
            await asyncio.gather(replayer, return_exceptions=True)
        if self.spool_depth:
            try:
                await asyncio.wait_for(self.replay(), timeout)
            except Exception:
                log.warning("%d request records stay spooled in %s for the next process", self.spool_depth,
                            settings.SPOOL_DIR)
        if self._pricing:
            await asyncio.gather(*self._pricing, return_exceptions=True)
        if self._sink is not None:
            await self._sink.close()
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def _datetime_fields(model) -> set[str]:
    return {f.attname for f in model._meta.concrete_fields if isinstance(f, DateTimeField)}


_DATETIMES = _datetime_fields(RequestRecord)
_STORED_DATETIMES = _datetime_fields(StoredResponse)


def _decode(record: dict, datetimes: set[str] = _DATETIMES) -> dict:
    """A spooled line back into record fields (datetimes were written as ISO 8601)."""
    fields = {k: parse_datetime(v) if k in datetimes and isinstance(v, str) else v for k, v in record.items()}
    if fields.get(STORED_RESPONSE):
        fields[STORED_RESPONSE] = _decode(fields[STORED_RESPONSE], _STORED_DATETIMES)
    return fields


def _resolve(group: list[tuple[dict, asyncio.Future]], error: Exception | None) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(error) if error else future.set_result(None)


def price_now() -> None:
    close_old_connections()
    try:
        price_finished_requests()  # called in-process, not queued
    except Exception:  # the next batch (or the beat task, with a broker) retries
        log.warning("pricing failed", exc_info=True)
    finally:
        close_old_connections()

