-- Rate limits counted where they are checked.
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
