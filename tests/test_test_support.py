"""The test suite's own helpers (tests/conftest.py), where a bug would hide failures or make them."""
from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from .conftest import _flush_retrying_deadlocks


def _flush_failing(times: int, reason: str):
    calls = []

    def teardown(test_case):
        calls.append(test_case)
        if len(calls) <= times:
            try:
                raise RuntimeError(reason)
            except RuntimeError as cause:  # as Django's flush command raises it
                raise CommandError("Database test couldn't be flushed. Possible reasons: ...") from cause

    return teardown, calls


def test_a_flush_chosen_as_a_deadlock_victim_is_tried_again():
    teardown, calls = _flush_failing(2, "deadlock detected\nDETAIL: Process 1 waits for AccessExclusiveLock")
    _flush_retrying_deadlocks(teardown)("case")
    assert calls == ["case"] * 3


def test_a_flush_failing_otherwise_is_not_retried():
    teardown, calls = _flush_failing(1, 'relation "x" does not exist')
    with pytest.raises(CommandError):
        _flush_retrying_deadlocks(teardown)("case")
    assert calls == ["case"]


def test_three_deadlocks_in_a_row_fail_the_test():
    teardown, calls = _flush_failing(3, "deadlock detected")
    with pytest.raises(CommandError):
        _flush_retrying_deadlocks(teardown)("case")
    assert len(calls) == 3
