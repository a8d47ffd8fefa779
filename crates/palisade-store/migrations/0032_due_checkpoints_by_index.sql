-- Which chains are due for a checkpoint, found through indexes instead of a walk over every
-- chain with events since its last checkpoint.
--
-- The sequencer asks on every pass (every 250 ms on every node). A chain is due once 1,000
-- events are unsigned or its last checkpoint is an hour old. The old query scanned the partial
-- index of every chain with unsigned events and filtered each one against both conditions: the
-- work grew with the number of organizations that wrote anything in the last hour, whether or
-- not any was due: 2.7 ms per pass with 10,000 such chains and 37 ms with 100,000 (15 % of a
-- core on every node at four passes a second); with the query below, 0.19 and 0.20 ms. Each
-- condition has an index that holds exactly its answer's range: the hour by `checkpointed_at`
-- (audit_chain_heads_due_idx, read oldest first and stopped at the boundary), the backlog by
-- `seq - checkpointed_seq` (new; one more index entry when a sealing batch moves a head, whose
-- updates were never HOT: `seq` is in the partial indexes' predicate).
-- The plan is fixed, as the sequencer's is (0031): without statistics the planner would guess.
CREATE INDEX audit_chain_heads_backlog_idx ON palisade.audit_chain_heads ((seq - checkpointed_seq))
    WHERE seq > checkpointed_seq;

CREATE OR REPLACE FUNCTION palisade.due_checkpoints(p_now timestamptz, p_events bigint, p_every interval, p_max integer)
    RETURNS TABLE (tenant_id uuid, seq bigint, hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    AS $$
    SELECT d.tenant_id, d.seq, d.hash FROM (
        (SELECT h.tenant_id, h.seq, h.hash, h.checkpointed_at FROM palisade.audit_chain_heads h
          WHERE h.seq > h.checkpointed_seq AND h.checkpointed_at <= p_now - p_every
          ORDER BY h.checkpointed_at LIMIT p_max)
        UNION
        (SELECT h.tenant_id, h.seq, h.hash, h.checkpointed_at FROM palisade.audit_chain_heads h
          WHERE h.seq > h.checkpointed_seq AND h.seq - h.checkpointed_seq >= p_events
          LIMIT p_max)
    ) d
    ORDER BY d.checkpointed_at LIMIT p_max
$$;
ALTER FUNCTION palisade.due_checkpoints(timestamptz, bigint, interval, integer) OWNER TO palisade_sealer;
