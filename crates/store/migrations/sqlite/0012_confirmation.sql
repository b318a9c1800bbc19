-- How a challenge is confirmed: `pound` ('#' alone), `keypad_code` (number matching: the
-- two digits of `display_code`, shown on the sign-in page, then '#') or `spoken_code` (the
-- call reads a code that the person types on the page). A spoken code is kept only as a
-- keyed hash (`code_hash`), with the attempts made to type it. `code_matched` says whether
-- the code entered was the right one (empty until one is entered). An API key may carry the
-- mode of its challenges.
ALTER TABLE challenges ADD COLUMN confirmation TEXT NOT NULL DEFAULT 'pound';
ALTER TABLE challenges ADD COLUMN display_code TEXT;
ALTER TABLE challenges ADD COLUMN code_hash TEXT;
ALTER TABLE challenges ADD COLUMN code_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE challenges ADD COLUMN code_matched BIGINT;
ALTER TABLE api_keys ADD COLUMN confirmation TEXT;
