-- Every change of a challenge is announced on the channel `callverify_challenges` (payload
-- `<id> <state>`, sent when the transaction commits), so that each node's copy of the
-- challenges it serves to polls stays current whoever made the change.
CREATE OR REPLACE FUNCTION callverify_challenge_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('callverify_challenges', NEW.id || ' ' || NEW.state);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER challenges_changed AFTER UPDATE ON challenges
    FOR EACH ROW EXECUTE FUNCTION callverify_challenge_changed();
