-- Search and aggregates (docs/adr/0020). Processing queues each event it settles in
-- `search_queue` (one row; after the acknowledgement, never on the ingest path) and the
-- processing worker indexes the queue when it has nothing else to do: `event_docs` maps the event to its
-- search document (`seq`, its id's millisecond and 15 random bits, so newest first is
-- descending `seq`) and remembers the status it was counted under in `event_counts`,
-- the per minute, hour and day totals of processed and failed events the charts read.
-- The full-text side and `event_counts` differ per backend: 0008_search.sqlite.sql,
-- 0008_search.postgresql.sql.
--
-- Chart reads by time range are index-only: deliveries by creation time (written by
-- processing), and the time indexes of consumption and parking transactions widened to
-- carry what their sums read (the same number of index writes as before).

CREATE TABLE search_queue (
    seq {serial_pk},
    event_id TEXT NOT NULL,
    status TEXT NOT NULL
);

-- Events processed before this version are queued too: the worker indexes them when idle.
INSERT INTO search_queue (event_id, status)
    SELECT id, status FROM inbox WHERE status IN ('processed', 'failed') ORDER BY id;

CREATE INDEX deliveries_created ON deliveries (created_at, destination, status);
DROP INDEX consumption_occurred_at;
CREATE INDEX consumption_occurred_at ON consumption (occurred_at, token, group_id, kwh);
DROP INDEX parking_transactions_ended_at;
CREATE INDEX parking_transactions_ended_at ON parking_transactions
    (ended_at, license_number, currency, price);
