-- The operator's log: refused attempts, and what lets the log find calls, challenges that
-- made no call (a trusted device's sign-in) and refusals without reading a table through.
-- A refusal (the number's country or type, a rate limit, the cap on concurrent calls, a
-- fraud block) keeps the masked number only. A refusal repeated within a minute (same key,
-- rule, user and number) adds to `repeats` of its row, and a key past 100 rows in a minute
-- adds to its latest one: the table grows by at most about 100 rows a minute per key
-- (Store::record_refusal). Retention deletes refusals as it does calls.
CREATE TABLE refusals (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    repeats BIGINT NOT NULL,
    api_key_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    user_id TEXT,
    phone_masked TEXT NOT NULL,
    rule TEXT NOT NULL,
    detail TEXT NOT NULL,
    retry_after_s BIGINT
);
CREATE INDEX refusals_at ON refusals (at, id);
CREATE INDEX refusals_key ON refusals (api_key_id, at);
CREATE INDEX refusals_user ON refusals (user_id, at);
CREATE INDEX refusals_phone ON refusals (phone_masked, at);
CREATE INDEX calls_challenge ON calls (challenge_id);
CREATE INDEX calls_phone ON calls (phone_masked, started_at);
CREATE INDEX challenges_created ON challenges (created_at, id);
