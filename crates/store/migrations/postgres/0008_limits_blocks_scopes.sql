-- Rate limits counted where they are checked, fraud blocks, phone replacement and key scopes.
--
-- `rate_counts`: the calls counted against each limit (scope `phone`, `user`, `api_key` or
-- `country`, and its key), in buckets of a sixtieth of the limit's window, so that a check
-- sums at most 61 rows whatever the volume. They are counted and checked in the transaction
-- that makes the challenge (or admits a second call of it), and pruned once older than
-- every window.
CREATE TABLE rate_counts (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (scope, key, bucket)
);
CREATE INDEX rate_counts_bucket ON rate_counts (bucket);

-- A fraud report (0#) blocks the user and the numbers called until `until`, unless lifted
-- earlier through the API (by the key named in `lifted_by_*`).
CREATE TABLE fraud_blocks (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    phone TEXT,
    challenge_id TEXT NOT NULL REFERENCES challenges (id),
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    until BIGINT NOT NULL,
    lifted_at BIGINT,
    lifted_by_key_id TEXT,
    lifted_by_key_name TEXT
);
CREATE INDEX fraud_blocks_user ON fraud_blocks (user_id, until);
CREATE INDEX fraud_blocks_phone ON fraud_blocks (phone, until);

-- How long a fraud report on the challenge blocks (set from the policy when it is made), and
-- whether an enrolment must first be approved on the user's current primary phone.
ALTER TABLE challenges ADD COLUMN fraud_block_ms BIGINT NOT NULL DEFAULT 86400000;
ALTER TABLE challenges ADD COLUMN confirm_primary BIGINT NOT NULL DEFAULT 0;

-- A service key with `phone_admin` (1) replaces users' verified phones without the old
-- phone's approval, and removes verified phones.
ALTER TABLE api_keys ADD COLUMN phone_admin BIGINT NOT NULL DEFAULT 0;
