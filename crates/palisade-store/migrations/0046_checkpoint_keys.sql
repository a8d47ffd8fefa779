-- Checkpoints name a real audit key.
--
-- record_checkpoint, purge_audit and purge_instance_audit stored whatever key id their caller
-- gave. The database cannot check an Ed25519 signature, and the operator's verification does
-- (`palisade audit verify`), but a checkpoint naming a key the instance never had was stored
-- all the same. Now each refuses (PA500) a key id that is not one of the instance's unrevoked
-- audit keys, which since 0043 only add_audit_key adds, one at a time.
CREATE FUNCTION palisade.require_audit_key(p_key_id text) RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM palisade.signing_keys k
                    WHERE k.key_id = p_key_id AND k.purpose = 'audit' AND k.revoked_at IS NULL) THEN
        RAISE EXCEPTION 'a checkpoint must name one of the instance''s audit keys, not %', p_key_id
            USING ERRCODE = 'PA500';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION palisade.require_audit_key(text) FROM PUBLIC;
-- The guarded functions run as the sequencer's role, which owns them.
GRANT EXECUTE ON FUNCTION palisade.require_audit_key(text) TO palisade_sealer;

DO $$
DECLARE
    v_fn regprocedure;
    v_def text;
    v_new text;
BEGIN
    FOREACH v_fn IN ARRAY ARRAY[
        'palisade.record_checkpoint(uuid,bigint,bytea,timestamptz,text,bytea)'::regprocedure,
        'palisade.purge_audit(uuid,bigint,bytea,timestamptz,text,bytea)'::regprocedure,
        'palisade.purge_instance_audit(bigint,bytea,timestamptz,text,bytea)'::regprocedure]
    LOOP
        v_def := pg_get_functiondef(v_fn);
        -- Just before the checkpoint is written: each function's own checks (the chain
        -- position, retention, legal hold, the time) still come first; a refusal rolls back
        -- whatever the function did before it.
        v_new := regexp_replace(v_def, 'INSERT INTO palisade\.audit_checkpoints',
                                E'PERFORM palisade.require_audit_key(p_key_id);\n    INSERT INTO palisade.audit_checkpoints');
        IF v_new = v_def THEN
            RAISE EXCEPTION '% has no body to guard', v_fn;
        END IF;
        EXECUTE v_new;
    END LOOP;
END
$$;
