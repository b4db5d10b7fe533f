"""Console sessions on an injected clock: signed cookies, idle expiry, absolute lifetime,
sign-out, tokens removed from the configuration, and the CSRF token's binding."""

from __future__ import annotations

from hookgate.config import AdminToken
from hookgate.console.auth import SLIDE_SECONDS, Sessions

WRITE = AdminToken(name="ops", token="write-token-0123456789", scope="write")
READ = AdminToken(name="viewer", token="read-token-0123456789", scope="read")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def sessions(clock: Clock, *tokens: AdminToken) -> Sessions:
    return Sessions(list(tokens) or [WRITE, READ], idle=600, lifetime=3600, clock=clock)


def test_a_token_signs_in_and_its_cookie_is_checked() -> None:
    clock = Clock()
    book = sessions(clock)
    assert book.match("write-token-0123456789") == WRITE
    assert book.match("write-token-012345678") is None
    assert book.match("") is None
    session, cookie = book.begin(READ)
    checked = book.check(cookie)
    assert checked is not None and checked.actor == READ and not checked.can_write
    assert checked.csrf == session.csrf


def test_a_forged_or_altered_cookie_is_refused() -> None:
    clock = Clock()
    book = sessions(clock)
    _, cookie = book.begin(READ)
    body, _, signature = cookie.partition(".")
    _, other = book.begin(WRITE)
    assert book.check(f"{other.partition('.')[0]}.{signature}") is None
    assert book.check(body + "." + signature[:-2] + "AA") is None
    assert book.check("garbage") is None
    assert book.check("") is None
    assert book.check(None) is None


def test_idle_sessions_end_and_use_slides_the_deadline() -> None:
    clock = Clock()
    book = sessions(clock)
    session, cookie = book.begin(WRITE)
    clock.now += SLIDE_SECONDS - 1
    assert book.refreshed(session) is None  # not yet worth a new cookie
    clock.now += 500
    session = book.check(cookie)
    assert session is not None
    fresh = book.refreshed(session)
    assert fresh is not None
    clock.now += 550  # 1050 s after sign-in, 550 s after the last use
    assert book.check(cookie) is None
    assert book.check(fresh) is not None
    clock.now += 601
    assert book.check(fresh) is None


def test_a_session_ends_after_its_lifetime_however_busy() -> None:
    clock = Clock()
    book = sessions(clock)
    _, cookie = book.begin(WRITE)
    for _ in range(7):
        clock.now += 500
        current = book.check(cookie)
        assert current is not None
        cookie = book.refreshed(current) or cookie
    clock.now += 200  # 3700 s since sign-in
    assert book.check(cookie) is None


def test_sign_out_revokes_and_a_removed_token_ends_its_sessions() -> None:
    clock = Clock()
    book = sessions(clock)
    session, cookie = book.begin(WRITE)
    book.end(session)
    assert book.check(cookie) is None
    _, cookie = book.begin(WRITE)
    assert sessions(clock, READ).check(cookie) is None  # the token left the configuration
    rotated = AdminToken(name="ops", token="a-new-secret-value-0000", scope="write")
    assert sessions(clock, rotated).check(cookie) is None  # same name, new secret


def test_the_csrf_token_belongs_to_one_session() -> None:
    clock = Clock()
    book = sessions(clock)
    first, _ = book.begin(WRITE)
    second, _ = book.begin(WRITE)
    assert book.csrf_ok(first, first.csrf)
    assert not book.csrf_ok(first, second.csrf)
    assert not book.csrf_ok(first, None)
    assert not book.csrf_ok(first, "")
