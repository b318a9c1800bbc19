-- Which node is calling a challenge, and until when its claim holds unless renewed: a node
-- that stops (killed, cut off) lets its claims lapse, and the others mark those challenges
-- `interrupted` (never called again).
ALTER TABLE challenges ADD COLUMN claimed_by TEXT;
ALTER TABLE challenges ADD COLUMN lease_until BIGINT;
CREATE INDEX challenges_lease ON challenges (state, lease_until);
