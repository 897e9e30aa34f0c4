"""Celery beat's schedule, run in-process: what `make run` uses when there is no broker
(no REDIS_URL), so the embedded default prices, rolls up, sends budget alerts and closes
statements on its own. Production runs `celery beat` and workers instead.

One daemon thread walks settings.CELERY_BEAT_SCHEDULE with Celery's own schedule objects
(intervals and crontabs) and runs each due task in that thread (`Task.apply`), so the
schedule has one source and a new entry needs no change here.
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery.schedules import crontab, maybe_schedule
from django.conf import settings
from django.db import connections

log = logging.getLogger(__name__)

MAX_SLEEP = 1.0


class InProcessBeat(threading.Thread):
    def __init__(self, app, schedule: dict | None = None):
        super().__init__(name="tokenhub-beat", daemon=True)
        self.app = app
        self.schedule = dict(settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule)
        self.stopping = threading.Event()
        self.runs: dict[str, int] = {}

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self.join(timeout)

    def _entries(self) -> list[dict]:
        now = self.app.now()
        entries = []
        for name, spec in self.schedule.items():
            sched = maybe_schedule(spec["schedule"], app=self.app)
            # Intervals run once at start-up, then every interval; crontabs at their times.
            first = now if isinstance(sched, crontab) else now - getattr(sched, "run_every", timedelta(0))
            entries.append({"name": name, "task": spec["task"], "schedule": sched, "last": first,
                            "args": spec.get("args", ()), "kwargs": spec.get("kwargs", {})})
        return entries

    def run(self) -> None:
        self.app.loader.import_default_modules()  # autodiscovery: every app's tasks module
        # A "task succeeded" line every 2 s is noise in a terminal; failures still log.
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
        entries = self._entries()
        while not self.stopping.is_set():
            sleep = MAX_SLEEP
            for entry in entries:
                due, next_seconds = entry["schedule"].is_due(entry["last"])
                if due:
                    entry["last"] = self.app.now()
                    self._run(entry)
                sleep = min(sleep, max(next_seconds, 0.05))
                if self.stopping.is_set():
                    return
            self.stopping.wait(sleep)

    def _run(self, entry: dict) -> None:
        try:
            self.app.tasks[entry["task"]].apply(args=entry["args"], kwargs=entry["kwargs"], throw=True)
            self.runs[entry["name"]] = self.runs.get(entry["name"], 0) + 1
        except Exception:
            log.exception("periodic task %s failed; it runs again at its next time", entry["name"])
        finally:
            connections.close_all()  # this thread's connections: no stale one is kept between runs
