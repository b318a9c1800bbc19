-- Users' phones (enrolment: a phone is verified when its `enroll` challenge is approved),
-- trusted devices ("don't ask again for N days"), webhook deliveries (one row per decided
-- challenge with a callback URL, written with the decision), and the indexes that the rate
-- limits count with. `remember_device_ms`: how long an approved sign-in trusts the device
-- (0: it does not).
ALTER TABLE challenges ADD COLUMN remember_device_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX challenges_phone ON challenges (phone, created_at);
CREATE INDEX challenges_user ON challenges (user_id, created_at);
CREATE INDEX challenges_key ON challenges (api_key_id, created_at);
CREATE INDEX challenges_expiry ON challenges (state, expires_at);

CREATE TABLE phones (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    role TEXT NOT NULL,
    language TEXT NOT NULL,
    challenge_id TEXT NOT NULL REFERENCES challenges (id),
    created_at BIGINT NOT NULL,
    verified_at BIGINT,
    removed_at BIGINT
);
CREATE INDEX phones_user ON phones (user_id, role);
CREATE INDEX phones_challenge ON phones (challenge_id);

CREATE TABLE trusted_devices (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    challenge_id TEXT NOT NULL UNIQUE REFERENCES challenges (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX trusted_devices_user ON trusted_devices (user_id);

CREATE TABLE webhooks (
    challenge_id TEXT PRIMARY KEY REFERENCES challenges (id),
    url TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    gave_up_at BIGINT
);
CREATE INDEX webhooks_due ON webhooks (next_attempt_at);
ALTER TABLE webhook_attempts ADD COLUMN duration_ms BIGINT
