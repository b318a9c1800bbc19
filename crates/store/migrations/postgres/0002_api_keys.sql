-- API keys, stored as SHA-256 hashes of their secrets. `kind` is `service` (identity
-- services: create and read challenges) or `operator` (read-only call log).
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
