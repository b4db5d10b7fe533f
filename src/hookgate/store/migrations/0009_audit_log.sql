-- The audit log (ADR 0021): every change made through the admin API or the command line,
-- with who made it (an admin token's name, or `cli:<user>`), when, what, on which target
-- and how it ended. Rows are only ever added; ids are time-ordered, so `id` pages them.

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at {ts} NOT NULL,
    actor TEXT NOT NULL,
    channel TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail {json} NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
