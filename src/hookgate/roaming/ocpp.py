"""OCPP local authorization lists: the `SendLocalList` payload a charging station keeps
to authorize hookgate's tokens while offline, for OCPP 1.6 and 2.0.1.

The list version is the sequence number of the authorization change log: every change of
a token or group moves it forward, so a Differential list "since version V" carries
exactly the tokens changed after V (those of a changed group included), and a token that
was deleted, or may no longer be kept locally (whitelist NEVER), goes out as a removal
(an entry without its info, as both versions of OCPP specify).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from hookgate.domain.rules import Group, Token

OcppVersion = Literal["1.6", "2.0.1"]
OCPP_VERSIONS: tuple[OcppVersion, ...] = ("1.6", "2.0.1")
# Longest identifier each version carries (idTag CiString20Type, IdTokenType.idToken).
MAX_ID = {"1.6": 20, "2.0.1": 36}
# hookgate's token types as OCPP 2.0.1 IdTokenEnumType.
ID_TOKEN_TYPES = {"RFID": "ISO14443", "APP_USER": "Central", "AD_HOC_USER": "Central"}


@dataclass(slots=True)
class LocalList:
    """A `SendLocalList` request payload and the tokens it had to leave out."""

    payload: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


def _status(token: Token, group: Group | None, now: datetime) -> str:
    """Whether the station may authorize the token offline now (OCPP's status names)."""
    if token.status == "blocked" or (group is not None and group.status == "blocked"):
        return "Blocked"
    if token.valid_until is not None and now >= token.valid_until:
        return "Expired"
    if token.valid_from is not None and now < token.valid_from:
        return "Invalid"
    return "Accepted"


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _entry(
    version: OcppVersion, uid: str, token: Token | None, group: Group | None, now: datetime
) -> dict[str, Any]:
    """One list entry; without `token` it removes `uid` from the station's list."""
    if version == "1.6":
        entry: dict[str, Any] = {"idTag": uid}
        if token is not None:
            info: dict[str, Any] = {"status": _status(token, group, now)}
            if token.valid_until is not None:
                info["expiryDate"] = _instant(token.valid_until)
            if token.group_id is not None and len(token.group_id) <= MAX_ID["1.6"]:
                info["parentIdTag"] = token.group_id
            entry["idTagInfo"] = info
        return entry
    id_type = ID_TOKEN_TYPES.get(token.type if token else "RFID", "Local")
    entry = {"idToken": {"idToken": uid, "type": id_type}}
    if token is not None:
        info = {"status": _status(token, group, now)}
        if token.valid_until is not None:
            info["cacheExpiryDateTime"] = _instant(token.valid_until)
        if token.group_id is not None:
            info["groupIdToken"] = {"idToken": token.group_id[:36], "type": "Central"}
        entry["idTokenInfo"] = info
    return entry


def local_list(
    version: OcppVersion,
    list_version: int,
    tokens: dict[str, Token],
    groups: dict[str, Group],
    now: datetime,
    changed: Iterable[str] | None = None,
) -> LocalList:
    """The Full list (`changed` None) or the Differential one of the `changed` uids.
    Tokens whose uid is too long for the version are left out and named in `skipped`."""
    out = LocalList(payload={})
    entries: list[dict[str, Any]] = []
    uids = sorted(tokens if changed is None else set(changed))
    for uid in uids:
        if len(uid) > MAX_ID[version]:
            out.skipped.append(uid)
            continue
        token = tokens.get(uid)
        if token is not None and token.whitelist == "NEVER":
            token = None
        if token is None and changed is None:
            continue
        group = groups.get(token.group_id) if token and token.group_id else None
        entries.append(_entry(version, uid, token, group, now))
    update = "Full" if changed is None else "Differential"
    number = max(list_version, 1)
    if version == "1.6":
        out.payload = {"listVersion": number, "updateType": update}
        out.payload["localAuthorizationList"] = entries
    else:
        out.payload = {"versionNumber": number, "updateType": update}
        if entries:  # 2.0.1: the list, when present, holds at least one entry
            out.payload["localAuthorizationList"] = entries
    return out
