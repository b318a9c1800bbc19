-- Whether a call's media was SRTP (1) or plain RTP (0), NULL for calls logged before.
ALTER TABLE calls ADD COLUMN srtp BIGINT;
