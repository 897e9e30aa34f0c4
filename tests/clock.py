"""A movable clock for gateway subprocesses in tests (limit periods that roll over).

With TOKENHUB_TEST_CLOCK=<file> in its environment (see conftest.start_gateway), a
process's `django.utils.timezone.now()` is the real time plus the offset in seconds that
the file holds (none while it is missing). The test moves every process's clock at once
by rewriting the file. Only `timezone.now()` moves: Redis expiries, rate windows and
timeouts keep real time."""
from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

_state = {"checked": 0.0, "mtime": None, "offset": timedelta(0)}


def _offset(path: str) -> timedelta:
    now = time.monotonic()
    if now - _state["checked"] > 0.02:
        _state["checked"] = now
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            _state.update(mtime=None, offset=timedelta(0))
            return _state["offset"]
        if stat.st_mtime_ns != _state["mtime"]:
            with open(path) as f:
                text = f.read().strip()
            _state.update(mtime=stat.st_mtime_ns, offset=timedelta(seconds=float(text or 0)))
    return _state["offset"]


def install(path: str) -> None:
    from django.utils import timezone

    real_now = timezone.now
    timezone.now = lambda: real_now() + _offset(path)


def set_clock(path, when: datetime | None) -> None:
    """Make the processes' clock read `when` from now on (None: the real time)."""
    if when is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    from django.utils import timezone

    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(repr((when - timezone.now()).total_seconds()))
    os.replace(tmp, path)
