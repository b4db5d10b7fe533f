"""Time-ordered identifiers (ULID layout: 48-bit milliseconds + 80 random bits).

Generated in the process, so an id is known before the write and sorts by arrival
across instances that share a database. The random part comes from a per-process
generator seeded from the OS (reseeded in forked children): `os.urandom` per id would
release the GIL on every request, and get it back only after the writer thread lets go.
"""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import datetime

# Crockford's base32 digits (they sort like the values), two at a time: a 10-bit lookup
# per pair of digits is several times faster than base64.b32encode and a translate.
_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _DIGITS for b in _DIGITS]
_random = random.Random(os.urandom(32))  # noqa: S311 - ids are unique, not secret
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def _encode(value: int) -> str:
    # 26 digits hold 130 bits: the 128-bit value with two leading zero bits, 13 pairs.
    p = _PAIRS
    return (
        p[value >> 120 & 1023]
        + p[value >> 110 & 1023]
        + p[value >> 100 & 1023]
        + p[value >> 90 & 1023]
        + p[value >> 80 & 1023]
        + p[value >> 70 & 1023]
        + p[value >> 60 & 1023]
        + p[value >> 50 & 1023]
        + p[value >> 40 & 1023]
        + p[value >> 30 & 1023]
        + p[value >> 20 & 1023]
        + p[value >> 10 & 1023]
        + p[value & 1023]
    )


_last = [0]  # the last id's value: ids of one process strictly increase
_lock = threading.Lock()


def new_id() -> str:
    """A 26-character, lexicographically time-sortable identifier.

    Within one process ids strictly increase (ULID's monotonic mode): an id made in the
    same millisecond as the previous one, or while the clock stepped back, is the previous
    one plus one, so things created one after another list in that order."""
    value = (time.time_ns() // 1_000_000) << 80 | _random.getrandbits(80)
    with _lock:
        if value <= _last[0]:
            value = _last[0] + 1
        _last[0] = value
    return _encode(value)


def floor_id(moment: datetime) -> str:
    """The smallest id generated at or after `moment`: time filters become id ranges. No
    id is older than the epoch, so an earlier moment gives the smallest id of all."""
    return _encode(max(0, int(moment.timestamp() * 1000)) << 80)
