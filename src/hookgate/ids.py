"""Time-ordered identifiers (ULID layout: 48-bit milliseconds + 80 random bits).

Generated in the process, so an id is known before the write and sorts by arrival
across instances that share a database. The random part comes from a per-process
generator seeded from the OS (reseeded in forked children): `os.urandom` per id would
release the GIL on every request, and get it back only after the writer thread lets go.
"""

from __future__ import annotations

import base64
import os
import random
import time
from datetime import datetime

# RFC 4648 base32 digits, re-spelt in Crockford's alphabet (which sorts like the values).
_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)
_random = random.Random(os.urandom(32))  # noqa: S311 - ids are unique, not secret
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def _encode(value: int) -> str:
    # 26 digits hold 130 bits: the 128-bit value with two leading zero bits. Shifted into
    # 17 bytes, base32's first 26 digits are exactly those.
    return base64.b32encode((value << 6).to_bytes(17, "big"))[:26].translate(_CROCKFORD).decode()


def new_id() -> str:
    """A 26-character, lexicographically time-sortable identifier."""
    return _encode((time.time_ns() // 1_000_000) << 80 | _random.getrandbits(80))


def floor_id(moment: datetime) -> str:
    """The smallest id generated at or after `moment`: time filters become id ranges."""
    return _encode(int(moment.timestamp() * 1000) << 80)
