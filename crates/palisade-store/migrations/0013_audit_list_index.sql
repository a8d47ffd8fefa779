-- Listing and exporting the audit log page through (occurred_at, id), newest first: one index
-- serves that keyset exactly (the one it replaces stopped at occurred_at).
DROP INDEX palisade.audit_events_tenant_time_idx;
CREATE INDEX audit_events_tenant_time_idx ON palisade.audit_events (tenant_id, occurred_at, id);

-- The sequencer takes its batch in transaction order only (the chain orders each batch by
-- organization, transaction and id itself): with a large backlog, ordering the candidates by
-- (xid, id) meant sorting the whole backlog on every call.
CREATE OR REPLACE FUNCTION palisade.seal_audit_events(p_max integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_low xid8;
    v_xmin xid8;
    v_last xid8;
    e palisade.audit_events%ROWTYPE;
    v_tenant uuid;
    v_seq bigint;
    v_hash bytea;
    v_count integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(727274002) THEN
        RETURN 0;
    END IF;
    SELECT s.low_xid INTO v_low FROM palisade.audit_sealer s WHERE s.id = 1 FOR UPDATE;
    v_xmin := pg_snapshot_xmin(pg_current_snapshot());
    FOR e IN SELECT b.* FROM (
                 SELECT a.* FROM palisade.audit_events a
                  WHERE a.tenant_id IS NOT NULL AND a.xid >= v_low
                    AND NOT EXISTS (SELECT 1 FROM palisade.audit_chain c WHERE c.event_id = a.id)
                  ORDER BY a.xid LIMIT greatest(p_max, 1)) b
              ORDER BY b.tenant_id, b.xid, b.id LOOP
        IF v_tenant IS DISTINCT FROM e.tenant_id THEN
            IF v_tenant IS NOT NULL THEN
                UPDATE palisade.audit_chain_heads h SET seq = v_seq, hash = v_hash WHERE h.tenant_id = v_tenant;
            END IF;
            v_tenant := e.tenant_id;
            SELECT h.seq, h.hash INTO v_seq, v_hash FROM palisade.audit_chain_heads h WHERE h.tenant_id = v_tenant;
            IF NOT FOUND THEN
                v_seq := 0;
                v_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
                INSERT INTO palisade.audit_chain_heads (tenant_id, seq, hash, checkpointed_at)
                VALUES (v_tenant, 0, v_hash, e.occurred_at);
            END IF;
        END IF;
        v_seq := v_seq + 1;
        v_hash := palisade.audit_hash(v_seq, v_hash, e);
        INSERT INTO palisade.audit_chain (tenant_id, seq, event_id, hash) VALUES (v_tenant, v_seq, e.id, v_hash);
        v_count := v_count + 1;
        v_last := greatest(v_last, e.xid);
    END LOOP;
    IF v_tenant IS NOT NULL THEN
        UPDATE palisade.audit_chain_heads h SET seq = v_seq, hash = v_hash WHERE h.tenant_id = v_tenant;
    END IF;
    -- A full batch may have left events behind: do not pass the last transaction it reached.
    UPDATE palisade.audit_sealer
       SET low_xid = greatest(v_low, CASE WHEN v_count >= p_max THEN least(v_xmin, v_last) ELSE v_xmin END)
     WHERE id = 1;
    RETURN v_count;
END
$$;
