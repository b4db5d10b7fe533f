"""Time-ordered identifiers (ULID layout: 48-bit milliseconds + 80 random bits).

Generated in the process, so an id is known before the write and sorts by arrival
across instances that share a database.
"""

from __future__ import annotations

import os
import time
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A 26-character, lexicographically time-sortable identifier."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def floor_id(moment: datetime) -> str:
    """The smallest id generated at or after `moment`: time filters become id ranges."""
    value = int(moment.timestamp() * 1000) << 80
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))
