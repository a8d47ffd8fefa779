-- A refresh-token rotation reaches its rows by their primary keys, with a fixed plan, and returns
-- its one row without building a result set.
--
-- 0015's rotate_refresh used the token and read its session in one statement (UPDATE … FROM
-- sessions … RETURNING ss.*). The plan of that join depended on the planner's view of the
-- sessions table: with few sessions (a new or small instance) it hashed the whole table on
-- every rotation; with many, it looked the session up by key. Now the UPDATE finds the token
-- by its primary key and returns its session id, the session is read by its primary key, and
-- sequential scans are off for the function (as for the sequencer's, 0031), so every rotation
-- costs two index lookups whatever the sizes and statistics. The one row comes back through
-- OUT parameters instead of RETURN QUERY.
-- Measured with pgbench calling the function (8 clients, one token family each, 2 cores) with
-- 60 sessions: PostgreSQL ~262 µs of CPU per rotation before, ~220 µs after; with 20,000
-- sessions (where the old plan already used the index) the two cost the same, ~205 µs.
-- Behaviour is unchanged: same arguments, same answers, same errors, same audit event on reuse,
-- still the only way the runtime role touches refresh_tokens (grants.sql grants EXECUTE again:
-- a dropped function loses its grants).
DROP FUNCTION palisade.rotate_refresh(bytea, bytea, timestamptz, uuid, inet, text, text);

CREATE FUNCTION palisade.rotate_refresh(p_old bytea, p_new bytea, p_now timestamptz,
                                        p_event uuid, p_ip inet, p_user_agent text, p_request_id text,
                                        OUT outcome text, OUT session_id uuid, OUT user_id uuid,
                                        OUT email text, OUT auth_time timestamptz, OUT amr text[])
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    AS $$
DECLARE
    s palisade.sessions%ROWTYPE;
    v_session uuid;
BEGIN
    -- The usual case: use the token (a row lock on it, so two concurrent uses of the same token
    -- see one winner), then read its session.
    UPDATE palisade.refresh_tokens r SET used_at = p_now
     WHERE r.token_hash = p_old AND r.used_at IS NULL
    RETURNING r.session_id INTO v_session;
    IF v_session IS NULL THEN
        -- Unknown, or used before: a reuse ends the session and is audited here, since only the
        -- database knows whose token it was.
        SELECT ss.* INTO s FROM palisade.sessions ss
         WHERE ss.id = (SELECT r.session_id FROM palisade.refresh_tokens r WHERE r.token_hash = p_old);
        IF s.id IS NULL OR s.revoked_at IS NOT NULL THEN
            RAISE EXCEPTION 'refresh token is not valid' USING ERRCODE = 'PA401';
        END IF;
        UPDATE palisade.sessions ss SET revoked_at = p_now WHERE ss.id = s.id;
        INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, actor_id, action, target_kind,
                                           target_id, ip, user_agent, request_id, outcome, details)
        VALUES (p_event, NULL, p_now, 'user', s.user_id, 'session.refresh_reused', 'session', s.id,
                p_ip, left(p_user_agent, 512), left(p_request_id, 128), 'success', '{"revoked": "session"}');
        outcome := 'reused';
        session_id := s.id;
        user_id := s.user_id;
        email := (SELECT u.email FROM palisade.users u WHERE u.id = s.user_id);
        auth_time := coalesce(s.authenticated_at, s.created_at);
        amr := s.amr;
        RETURN;
    END IF;
    SELECT ss.* INTO s FROM palisade.sessions ss WHERE ss.id = v_session;
    IF s.revoked_at IS NOT NULL OR coalesce(s.refresh_expires_at, s.expires_at) <= p_now
       OR s.last_seen_at + s.idle_timeout <= p_now THEN
        RAISE EXCEPTION 'session is not valid' USING ERRCODE = 'PA401';
    END IF;
    INSERT INTO palisade.refresh_tokens (token_hash, session_id, issued_at) VALUES (p_new, s.id, p_now);
    -- Activity, at most once a minute (as touch_session does).
    IF s.last_seen_at < p_now - interval '60 seconds' THEN
        UPDATE palisade.sessions ss SET last_seen_at = p_now WHERE ss.id = s.id;
    END IF;
    outcome := 'rotated';
    session_id := s.id;
    user_id := s.user_id;
    auth_time := coalesce(s.authenticated_at, s.created_at);
    amr := s.amr;
END
$$;
