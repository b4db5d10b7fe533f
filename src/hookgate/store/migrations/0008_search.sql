-- Search and aggregates (docs/adr/0020). Processing indexes each event it takes (after
-- the acknowledgement, never on the ingest path): `event_docs` maps the event to its
-- search document (`seq`, its id's millisecond and 15 random bits, so newest first is
-- descending `seq`) and remembers the status it was counted under in `event_counts`,
-- the per minute, hour and day totals of processed and failed events the charts read.
-- The full-text side differs per backend: 0008_search.sqlite.sql, .postgresql.sql.

CREATE TABLE event_counts (
    grain TEXT NOT NULL,
    bucket {ts} NOT NULL,
    source TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    total BIGINT NOT NULL,
    PRIMARY KEY (grain, bucket, source, event_type, status)
);
