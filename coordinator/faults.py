"""Fault injection for the crash tests: `crash_point(name)` ends the process on the spot when the
environment variable EDGETUNE_CRASH_AT names that point (`name`, or `name@N` for the N-th time the
process reaches it), and does nothing otherwise.

The end is `os._exit`: no finally blocks, no atexit, no flush of Python buffers, no SQLite
rollback, which is what `kill -9` or a power cut leaves behind. The points sit between the steps
whose order the durability rules depend on (see rounds.py), so a test can stop the coordinator
between any two of them and check that a restart loses nothing.
"""

from __future__ import annotations

import os
from collections import Counter

CRASH_ENV = "EDGETUNE_CRASH_AT"
CRASH_EXIT_CODE = 86  # unlike any exit the coordinator chooses, so a test knows the crash was the injected one

POINTS = (
    "update-committed",  # an update is in the ledger, the device has not been answered
    "round-opened",  # a round and its assignments are in the ledger, no device has its task
    "round-merged",  # a round's updates are merged in memory, nothing written
    "checkpoint-staged",  # a checkpoint (or any file written atomically) is whole beside its final name
    "checkpoint-renamed",  # the checkpoint has its final name, the ledger does not know it
    "round-closed",  # the ledger closed the round; metrics file and final export not yet written
)


_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point == name:
        _reached[name] += 1
        if _reached[name] == int(nth or 1):
            _crash()


def _crash() -> None:
    os._exit(CRASH_EXIT_CODE)
