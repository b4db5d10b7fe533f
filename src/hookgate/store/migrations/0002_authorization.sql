-- Charging authorization: rule entities, their change log, consumption, session holds.

CREATE TABLE auth_entities (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    doc {json} NOT NULL,
    managed_by TEXT NOT NULL,
    updated_at {ts} NOT NULL,
    PRIMARY KEY (kind, key)
);

-- Every change to what the engine holds, in commit order; instances poll it.
CREATE TABLE auth_changes (
    seq {serial_pk},
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    changed_at {ts} NOT NULL
);

CREATE TABLE consumption (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    session_key TEXT NOT NULL,
    origin TEXT NOT NULL,
    token TEXT,
    group_id TEXT,
    kwh TEXT NOT NULL,
    money TEXT,
    currency TEXT,
    occurred_at {ts} NOT NULL,
    CONSTRAINT consumption_source_session UNIQUE (source, session_key)
);
CREATE INDEX consumption_occurred_at ON consumption (occurred_at);

ALTER TABLE authorized_sessions ADD COLUMN group_id TEXT;
ALTER TABLE authorized_sessions ADD COLUMN reserved_kwh TEXT;
CREATE INDEX decisions_token_id ON decisions (token, id);
CREATE INDEX decisions_result_id ON decisions (result, id);
