-- The rejection log is bounded: each record knows what it costs (`stored_bytes`: body,
-- replay copy, detail and path) so the oldest can be deleted once the log is over its
-- size cap, and refusals that were only counted (beyond the per-minute sample) are
-- summed per minute, source and reason in `rejection_counts`.

ALTER TABLE rejections ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE rejections SET stored_bytes = length(body) + coalesce(length(replay), 0) + length(detail) + length(path);

CREATE TABLE rejection_counts (
    minute {ts} NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    total BIGINT NOT NULL,
    recorded BIGINT NOT NULL,
    body_bytes BIGINT NOT NULL,
    PRIMARY KEY (minute, source, reason)
);
CREATE INDEX rejection_counts_source_minute ON rejection_counts (source, minute);
