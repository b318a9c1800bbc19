-- Microsoft Entra external authentication (EAM): the provider's signing keys (the private
-- key sealed by the caller, opaque bytes here), the nonces of accepted authorization
-- requests (only their SHA-256: the replay store), and each browser's EAM sign-in. A
-- challenge says where it came from (`api`, `eam`, `radius`) and what there made it
-- (`origin_ref`: for EAM the client-request-id). A phone an administrator imports has no
-- enrolment challenge, so `phones.challenge_id` may now be empty.
CREATE TABLE eam_keys (
    kid TEXT PRIMARY KEY,
    sealed_key BYTEA NOT NULL,
    certificate BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    sign_from BIGINT NOT NULL
);

CREATE TABLE eam_nonces (
    nonce_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX eam_nonces_expiry ON eam_nonces (expires_at);

CREATE TABLE eam_sessions (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    state TEXT,
    nonce TEXT NOT NULL,
    sub TEXT NOT NULL,
    tid TEXT NOT NULL,
    oid TEXT NOT NULL,
    acr TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client_request_id TEXT,
    language TEXT NOT NULL,
    challenge_id TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX eam_sessions_expiry ON eam_sessions (expires_at);

ALTER TABLE challenges ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
ALTER TABLE challenges ADD COLUMN origin_ref TEXT;

ALTER TABLE phones ALTER COLUMN challenge_id DROP NOT NULL;
