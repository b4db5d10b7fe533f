-- Request ids and trace context on what the edge stores, and the alert history.
-- `request_id` is the id every log line of the request carries and its problem answer
-- shows, so an operator can go from a provider's complaint to the exact rejection or
-- event. `trace_context` is the W3C traceparent of the ingress span (tracing on), so the
-- processing and the deliveries of an event join the trace of the request that brought it.

ALTER TABLE inbox ADD COLUMN request_id TEXT;
ALTER TABLE inbox ADD COLUMN trace_context TEXT;
ALTER TABLE rejections ADD COLUMN request_id TEXT;
CREATE INDEX rejections_request_id ON rejections (request_id);

-- One row per alert episode: it fires, is notified again every repeat interval while it
-- lasts, and resolves. At most one open (firing) episode per rule and subject.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    summary TEXT NOT NULL,
    details {json} NOT NULL,
    fired_at {ts} NOT NULL,
    last_seen_at {ts} NOT NULL,
    notified_at {ts},
    notifications INTEGER NOT NULL DEFAULT 0,
    resolved_at {ts},
    resolved_notified {bool} NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX alerts_open ON alerts (rule, subject) WHERE status = 'firing';
CREATE INDEX alerts_status_id ON alerts (status, id);

-- Which instance evaluates alert rules: a lease taken over once it lapses.
CREATE TABLE alert_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at {ts} NOT NULL
);
