-- What happened during a call, for the operator's timeline: the INVITE, the SIP responses,
-- the prompts played, the keys, the verdict and the end, each with its time since the INVITE.
CREATE TABLE call_steps (
    call_id TEXT NOT NULL REFERENCES calls (id),
    seq INTEGER NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (call_id, seq)
);
