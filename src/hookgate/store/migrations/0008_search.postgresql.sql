-- PostgreSQL: the terms (search.py makes them) as a tsvector beside the event, under a
-- GIN index; no text search configuration is involved, so both backends index the same
-- terms. `event_counts` carries its totals in its key's index.

CREATE TABLE event_docs (
    seq BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    counted TEXT NOT NULL,
    terms TSVECTOR NOT NULL
);
CREATE INDEX event_docs_terms ON event_docs USING gin (terms);
-- The planner walks `seq` backwards when it expects many matches and asks the GIN index
-- when it expects few. With the default statistics a term it has no figure for (a plate,
-- a token: a dozen rows in a million) is guessed at 0.3 % and the walk reads the whole
-- table; ten times the statistics bring that guess near 0.01 % (ANALYZE: 5 s at 1M rows).
ALTER TABLE event_docs ALTER COLUMN terms SET STATISTICS 1000;

CREATE TABLE event_counts (
    grain TEXT NOT NULL,
    bucket TIMESTAMPTZ NOT NULL,
    source TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    total BIGINT NOT NULL,
    PRIMARY KEY (grain, bucket, source, event_type, status) INCLUDE (total)
);
