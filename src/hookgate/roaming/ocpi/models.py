"""OCPI 2.2.1 objects hookgate sends and receives, written as msgspec structs straight
from the specification's text (no machine-readable schema set is published with it):
field names, types, lengths and which fields are required are the spec's.

Decoding a CPO's request with these types is the validation: a field of the wrong type,
a missing required one or a string over its length is refused with status 2001.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

VERSION = "2.2.1"


def cistring(length: int) -> object:
    """CiString(n): printable ASCII, at most `n` characters (compared case-insensitively)."""
    return msgspec.Meta(max_length=length, pattern=r"^[\x20-\x7e]*$")


CountryCode = Annotated[str, msgspec.Meta(min_length=2, max_length=2)]
PartyId = Annotated[str, cistring(3)]
Role = Literal["CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP"]
TokenType = Literal["AD_HOC_USER", "APP_USER", "OTHER", "RFID"]
WhitelistType = Literal["ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER"]
AllowedType = Literal["ALLOWED", "BLOCKED", "EXPIRED", "NO_CREDIT", "NOT_ALLOWED"]
ModuleID = Literal[
    "cdrs",
    "chargingprofiles",
    "commands",
    "credentials",
    "hubclientinfo",
    "locations",
    "sessions",
    "tariffs",
    "tokens",
]
InterfaceRole = Literal["SENDER", "RECEIVER"]


class Response(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The envelope of every OCPI answer (spec 4.1.7)."""

    data: object | None = None
    status_code: int
    status_message: str | None = None
    timestamp: datetime


class Version(msgspec.Struct, kw_only=True):
    version: str
    url: str


class Endpoint(msgspec.Struct, kw_only=True):
    identifier: ModuleID | str
    role: InterfaceRole
    url: str


class VersionDetails(msgspec.Struct, kw_only=True):
    version: str
    endpoints: list[Endpoint]


class Image(msgspec.Struct, kw_only=True, omit_defaults=True):
    url: str
    category: str
    type: Annotated[str, cistring(4)]
    thumbnail: str | None = None
    width: int | None = None
    height: int | None = None


class BusinessDetails(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: Annotated[str, msgspec.Meta(max_length=100)]
    website: str | None = None
    logo: Image | None = None


class CredentialsRole(msgspec.Struct, kw_only=True):
    role: Role
    business_details: BusinessDetails
    party_id: PartyId
    country_code: CountryCode


class Credentials(msgspec.Struct, kw_only=True):
    """The credentials object (spec 7.2.1): the token the other side is to use, the URL
    of one's versions endpoint, and one's roles."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    roles: Annotated[list[CredentialsRole], msgspec.Meta(min_length=1)]


class EnergyContract(msgspec.Struct, kw_only=True, omit_defaults=True):
    supplier_name: Annotated[str, msgspec.Meta(max_length=64)]
    contract_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class Token(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The Token object (spec 12.3.2)."""

    country_code: CountryCode
    party_id: PartyId
    uid: Annotated[str, cistring(36)]
    type: TokenType
    contract_id: Annotated[str, cistring(36)]
    visual_number: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    issuer: Annotated[str, msgspec.Meta(max_length=64)]
    group_id: Annotated[str, cistring(36)] | None = None
    valid: bool
    whitelist: WhitelistType
    language: Annotated[str, msgspec.Meta(min_length=2, max_length=2)] | None = None
    default_profile_type: Literal["CHEAP", "FAST", "GREEN", "REGULAR"] | None = None
    energy_contract: EnergyContract | None = None
    last_updated: datetime


class LocationReferences(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Where a token asks to charge (spec 12.4.4)."""

    location_id: Annotated[str, cistring(36)]
    evse_uids: list[Annotated[str, cistring(36)]] | None = None


class DisplayText(msgspec.Struct, kw_only=True):
    language: Annotated[str, msgspec.Meta(min_length=2, max_length=2)]
    text: Annotated[str, msgspec.Meta(max_length=512)]


class AuthorizationInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer to a real-time authorization (spec 12.4.1)."""

    allowed: AllowedType
    token: Token
    location: LocationReferences | None = None
    authorization_reference: Annotated[str, cistring(36)] | None = None
    info: DisplayText | None = None


class CdrToken(msgspec.Struct, kw_only=True):
    country_code: CountryCode
    party_id: PartyId
    uid: Annotated[str, cistring(36)]
    type: TokenType
    contract_id: Annotated[str, cistring(36)]


SessionStatus = Literal["ACTIVE", "COMPLETED", "INVALID", "PENDING", "RESERVATION"]


class Session(msgspec.Struct, kw_only=True):
    """The parts of a CPO's Session object (spec 9.3.1) hookgate acts on; the whole
    object is kept as received."""

    country_code: CountryCode
    party_id: PartyId
    id: Annotated[str, cistring(36)]
    start_date_time: datetime
    end_date_time: datetime | None = None
    kwh: Annotated[float, msgspec.Meta(ge=0)]
    cdr_token: CdrToken
    auth_method: Literal["AUTH_REQUEST", "COMMAND", "WHITELIST"]
    authorization_reference: Annotated[str, cistring(36)] | None = None
    location_id: Annotated[str, cistring(36)]
    evse_uid: Annotated[str, cistring(36)]
    connector_id: Annotated[str, cistring(36)]
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
    status: SessionStatus
    last_updated: datetime


class Price(msgspec.Struct, kw_only=True, omit_defaults=True):
    excl_vat: float
    incl_vat: float | None = None


class Cdr(msgspec.Struct, kw_only=True):
    """The parts of a CPO's CDR object (spec 10.4.1) hookgate acts on; the whole object
    is kept as received."""

    country_code: CountryCode
    party_id: PartyId
    id: Annotated[str, cistring(39)]
    start_date_time: datetime
    end_date_time: datetime
    session_id: Annotated[str, cistring(36)] | None = None
    cdr_token: CdrToken
    auth_method: Literal["AUTH_REQUEST", "COMMAND", "WHITELIST"]
    authorization_reference: Annotated[str, cistring(36)] | None = None
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
    total_cost: Price
    total_energy: Annotated[float, msgspec.Meta(ge=0)]
    total_time: Annotated[float, msgspec.Meta(ge=0)]
    last_updated: datetime
