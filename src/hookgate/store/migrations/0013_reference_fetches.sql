-- Objects a thin notification only names (an AMPECO CDR, transaction or charge point),
-- to be read from the provider's API after the event is stored (ADR 0026). Processing
-- queues one row per object and marks it `pending` again when a newer notification names
-- it; the fetch worker claims due rows (`next_at` is also its lease), and keeps the last
-- document it read, the attempts and the last error. A row is never deleted by a fetch:
-- `failed` rows stay visible and are retried by requeueing them.

CREATE TABLE reference_fetches (
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at {ts} NOT NULL,
    last_error TEXT,
    fetched_at {ts},
    document {json},
    updated_at {ts} NOT NULL,
    PRIMARY KEY (source, kind, ref_id)
);
CREATE UNIQUE INDEX reference_fetches_id ON reference_fetches (id);
CREATE INDEX reference_fetches_due ON reference_fetches (status, next_at);

-- The parts a fetched CDR breaks a session's cost into (energy, time, parking, fixed),
-- as a JSON list of objects (type, amount, quantity, unit); NULL when no CDR said.
ALTER TABLE charging_sessions ADD COLUMN cost_components {json};
