"""What a local server has done with its TCP connections, seen from the kernel (Linux).

A test that must know a server has taken a request's head (before it signals the server,
or opens one connection more) asks the kernel instead of sleeping: a connection whose
bytes the server has read has been accepted, and its head parsed, since the server parses
what it reads in the same step.
"""

from __future__ import annotations

from pathlib import Path

_ESTABLISHED = "01"


def unread(port: int) -> dict[int, int]:
    """Bytes not yet read by the server on 127.0.0.1:`port`, by client port, for every
    established connection to it (accepted or still in the accept queue)."""
    found: dict[int, int] = {}
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
            if state != _ESTABLISHED or int(local.rsplit(":", 1)[1], 16) != port:
                continue
            found[int(remote.rsplit(":", 1)[1], 16)] = int(queues.split(":")[1], 16)
    return found


def has_read_everything(port: int, clients: int) -> bool:
    """Whether the server on `port` holds at least `clients` connections and has read
    every byte sent to it on all of them."""
    queues = unread(port)
    return len(queues) >= clients and not any(queues.values())
