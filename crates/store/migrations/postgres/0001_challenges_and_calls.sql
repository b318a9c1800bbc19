-- Challenges, every state change with its time, calls with their keys and RTP figures, and
-- webhook attempts. Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE challenges (
    id TEXT PRIMARY KEY,
    api_key_id TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash TEXT,
    user_id TEXT,
    phone TEXT NOT NULL,
    language TEXT NOT NULL,
    purpose TEXT NOT NULL,
    callback_url TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    sip_status INTEGER,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    UNIQUE (api_key_id, idempotency_key)
);
CREATE INDEX challenges_state ON challenges (state, created_at);

CREATE TABLE challenge_events (
    id BIGSERIAL PRIMARY KEY,
    challenge_id TEXT NOT NULL REFERENCES challenges (id),
    state TEXT NOT NULL,
    at BIGINT NOT NULL,
    detail TEXT
);
CREATE INDEX challenge_events_challenge ON challenge_events (challenge_id, id);

CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    challenge_id TEXT NOT NULL REFERENCES challenges (id),
    phone_masked TEXT NOT NULL,
    trunk TEXT,
    outcome TEXT,
    sip_status INTEGER,
    detail TEXT,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    post_dial_delay_ms BIGINT,
    time_to_answer_ms BIGINT,
    time_to_key_ms BIGINT,
    time_to_verdict_ms BIGINT,
    packets_sent BIGINT,
    packets_received BIGINT,
    packets_lost BIGINT,
    jitter_ms DOUBLE PRECISION,
    packets_rejected BIGINT
);
CREATE INDEX calls_started ON calls (started_at, id);

CREATE TABLE call_keys (
    call_id TEXT NOT NULL REFERENCES calls (id),
    seq INTEGER NOT NULL,
    digit TEXT NOT NULL,
    source TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (call_id, seq)
);

CREATE TABLE webhook_attempts (
    id BIGSERIAL PRIMARY KEY,
    challenge_id TEXT NOT NULL REFERENCES challenges (id),
    attempt INTEGER NOT NULL,
    at BIGINT NOT NULL,
    status INTEGER,
    error TEXT
);
