-- SQLite: a contentless FTS5 table keyed by `seq` holds the terms (search.py makes them,
-- the `ascii` tokenizer only splits them on spaces, so both backends index the same terms).

CREATE TABLE event_docs (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    counted TEXT NOT NULL
);
CREATE VIRTUAL TABLE event_terms USING fts5(
    terms, content = '', detail = none, columnsize = 0, tokenize = 'ascii'
);
