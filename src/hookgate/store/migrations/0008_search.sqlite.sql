-- SQLite: a contentless FTS5 table keyed by `seq` holds the terms (search.py makes them,
-- the `ascii` tokenizer only splits them on spaces, so both backends index the same terms).
-- `event_counts` is clustered by its key, so a chart reads one range of it.

CREATE TABLE event_docs (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    counted TEXT NOT NULL
);
CREATE VIRTUAL TABLE event_terms USING fts5(
    terms, content = '', detail = none, columnsize = 0, tokenize = 'ascii'
);

CREATE TABLE event_counts (
    grain TEXT NOT NULL,
    bucket TEXT NOT NULL,
    source TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    PRIMARY KEY (grain, bucket, source, event_type, status)
) WITHOUT ROWID;
