-- Inbox, rejection log, authorization audit and approved sessions.
-- Placeholders {blob} {json} {ts} {bool} are filled per backend by store/migrations/__init__.py.
-- Ids are time-ordered (ids.py), so time ranges are id ranges: no index on received_at.

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE inbox (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    provider TEXT NOT NULL,
    event_type TEXT NOT NULL,
    received_at {ts} NOT NULL,
    dedup_key TEXT NOT NULL,
    subject TEXT,
    status TEXT NOT NULL,
    flags {json} NOT NULL,
    headers {json} NOT NULL,
    document {json},
    raw_body {blob} NOT NULL,
    body_sha256 TEXT NOT NULL,
    CONSTRAINT inbox_source_dedup_key UNIQUE (source, dedup_key)
);
CREATE INDEX inbox_source_id ON inbox (source, id);
CREATE INDEX inbox_status_id ON inbox (status, id);
CREATE INDEX inbox_type_id ON inbox (event_type, id);

CREATE TABLE rejections (
    id TEXT PRIMARY KEY,
    received_at {ts} NOT NULL,
    source TEXT NOT NULL,
    provider TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    headers {json} NOT NULL,
    remote TEXT,
    body_sha256 TEXT NOT NULL,
    body_size INTEGER NOT NULL,
    body {blob} NOT NULL
);
CREATE INDEX rejections_source_id ON rejections (source, id);

CREATE TABLE decisions (
    id TEXT PRIMARY KEY,
    decided_at {ts} NOT NULL,
    source TEXT NOT NULL,
    event_id TEXT,
    charger_id TEXT,
    token TEXT,
    user_id TEXT,
    installation_id TEXT,
    result TEXT NOT NULL,
    reasons {json} NOT NULL,
    session_id TEXT,
    fallback {bool} NOT NULL,
    latency_us INTEGER NOT NULL
);
CREATE INDEX decisions_source_id ON decisions (source, id);

CREATE TABLE authorized_sessions (
    session_id TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    charger_id TEXT,
    token TEXT,
    decision_id TEXT,
    started_at {ts},
    ended_at {ts},
    energy_kwh TEXT,
    start_event_id TEXT,
    end_event_id TEXT,
    PRIMARY KEY (source, session_id)
);
CREATE INDEX authorized_sessions_status ON authorized_sessions (status);
