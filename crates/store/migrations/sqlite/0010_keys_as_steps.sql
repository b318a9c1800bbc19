-- A call's keys are kept once, as its steps of kind 'key' (the call log reads its keys from
-- them). The calls logged before steps were kept get their keys as steps, then call_keys goes.
INSERT INTO call_steps (call_id, seq, at_ms, kind, detail)
SELECT k.call_id, k.seq, k.at_ms, 'key', k.digit || ' (' || k.source || ')'
FROM call_keys k
WHERE NOT EXISTS (SELECT 1 FROM call_steps s WHERE s.call_id = k.call_id);

DROP TABLE call_keys;
