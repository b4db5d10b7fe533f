-- Console sessions ended by signing out (ADR 0024): the nonce of a signed session cookie
-- that every instance refuses from then on. A row is kept until the session would have
-- ended anyway (`expires_at`, its sign-in plus the configured lifetime); `hookgate prune`
-- deletes it after that.

CREATE TABLE console_revocations (
    nonce TEXT PRIMARY KEY,
    expires_at {ts} NOT NULL
);
CREATE INDEX console_revocations_expires ON console_revocations (expires_at);
