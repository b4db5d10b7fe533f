-- PostgreSQL: every term's first two and three characters become terms of their own
-- ("abc*", search.py PREFIX_TERMS), so a short prefix query reads one posting list
-- instead of merging every term under the prefix (docs/adr/0020). Documents indexed
-- before this version get theirs here; the indexer writes them from now on. The GIN
-- index is built again after the rewrite: one bulk build instead of an index update per
-- document.

DROP INDEX event_docs_terms;

UPDATE event_docs SET terms = terms || array_to_tsvector(ARRAY(
    SELECT DISTINCT left(t, p.n) || '*'
    FROM unnest(tsvector_to_array(terms)) AS t, (VALUES (2), (3)) AS p (n)
    WHERE length(t) >= p.n
));

CREATE INDEX event_docs_terms ON event_docs USING gin (terms);

ANALYZE event_docs;
