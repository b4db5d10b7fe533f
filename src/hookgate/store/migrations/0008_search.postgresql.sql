-- PostgreSQL: the terms (search.py makes them) as a tsvector beside the event, under a
-- GIN index; no text search configuration is involved, so both backends index the same
-- terms.

CREATE TABLE event_docs (
    seq BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    counted TEXT NOT NULL,
    terms TSVECTOR NOT NULL
);
CREATE INDEX event_docs_terms ON event_docs USING gin (terms);
