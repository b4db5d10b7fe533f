-- OCPI 2.2.1 parties (CPOs) and their credentials. A row is made when hookgate issues a
-- CPO its registration token A; registering replaces A with the token B hookgate calls
-- the CPO with and the token C the CPO calls hookgate with. A and C are kept only as
-- SHA-256 digests: hookgate compares them and never shows them again.
CREATE TABLE ocpi_parties (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    token_a_sha256 TEXT,
    token_c_sha256 TEXT,
    token_b TEXT,
    versions_url TEXT,
    version TEXT,
    endpoints {json},
    roles {json},
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL
);
CREATE UNIQUE INDEX ocpi_parties_token_a ON ocpi_parties (token_a_sha256);
CREATE UNIQUE INDEX ocpi_parties_token_c ON ocpi_parties (token_c_sha256);

-- The token list a CPO pulls pages by last change (date_from, date_to).
CREATE INDEX auth_entities_kind_updated ON auth_entities (kind, updated_at, key);
