-- Retention (`[store] retention_days`): a periodic sweep deletes what is older, in batches,
-- and keeps only the masked number of a decided challenge (`redacted_at`: when it did).
-- These indexes let each batch find its rows without reading a table through.
ALTER TABLE challenges ADD COLUMN redacted_at BIGINT;
CREATE INDEX challenges_unredacted ON challenges (decided_at)
    WHERE redacted_at IS NULL AND decided_at IS NOT NULL;
CREATE INDEX challenge_events_at ON challenge_events (at);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
CREATE INDEX phones_removed ON phones (removed_at) WHERE removed_at IS NOT NULL;
CREATE INDEX phones_unverified ON phones (created_at) WHERE verified_at IS NULL;
CREATE INDEX trusted_devices_expiry ON trusted_devices (expires_at);
