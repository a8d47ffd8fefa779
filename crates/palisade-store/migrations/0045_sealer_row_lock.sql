-- The sequencer takes turns through a row lock instead of an advisory lock.
--
-- Until now a sequencer pass began with pg_try_advisory_xact_lock(727274002) and returned at
-- once when another session held that lock. Advisory locks belong to no table and need no
-- privilege: SQL injected into a runtime connection could take 727274002 at session level and
-- keep it, and from then on no event of any organization was chained or checkpointed (nothing
-- timed the hold out). The pass now takes its turn by locking the sequencer's own row
-- (audit_sealer, FOR UPDATE SKIP LOCKED): a row lock needs UPDATE on the table, which only
-- palisade_sealer has, so a runtime connection cannot take it by itself, and can hold it only
-- by running a pass (seal_audit_events) and keeping that transaction open, which ends with the
-- transaction; an open transaction holds the sequencer's horizon back as any does (ARCHITECTURE,
-- known gaps). Rewritten in place from the current definition (0040's), the lock lines only.
DO $$
DECLARE
    v_def text;
    v_new text;
BEGIN
    v_def := pg_get_functiondef('palisade.seal_audit_events(integer)'::regprocedure);
    v_new := regexp_replace(v_def,
        '\s*IF NOT pg_try_advisory_xact_lock\(727274002\) THEN\s*RETURN 0;\s*END IF;\s*SELECT s\.low_xid INTO v_low FROM palisade\.audit_sealer s WHERE s\.id = 1 FOR UPDATE;',
        E'\n    -- Another pass holds the sequencer''s row: its turn, not ours (0045).\n    SELECT s.low_xid INTO v_low FROM palisade.audit_sealer s WHERE s.id = 1 FOR UPDATE SKIP LOCKED;\n    IF NOT FOUND THEN\n        RETURN 0;\n    END IF;');
    IF v_new = v_def THEN
        RAISE EXCEPTION 'seal_audit_events is not the definition 0045 expects (0040''s)';
    END IF;
    EXECUTE v_new;
END
$$;
