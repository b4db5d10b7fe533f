-- Processing and delivery (docs/adr/0006): an inbox row in status 'received' is the outbox
-- entry of its processing step; processing fans it out into one delivery per destination.

ALTER TABLE inbox ADD COLUMN processed_at {ts};
ALTER TABLE inbox ADD COLUMN error TEXT;
CREATE INDEX decisions_event_id ON decisions (event_id);

CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    -- pending: not yet tried; failed: retry due at next_attempt_at; delivered; dead.
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at {ts} NOT NULL,
    lease_owner TEXT,
    lease_until {ts},
    last_status_code INTEGER,
    last_error TEXT,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    delivered_at {ts},
    CONSTRAINT deliveries_event_destination UNIQUE (event_id, destination)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_destination_id ON deliveries (destination, id);

CREATE TABLE delivery_attempts (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at {ts} NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    error TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);

CREATE TABLE destination_state (
    name TEXT PRIMARY KEY,
    disabled_at {ts},
    reason TEXT,
    updated_at {ts} NOT NULL
);
