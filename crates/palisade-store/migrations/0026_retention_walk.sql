-- Retention finds each chain's cut by walking the chain from its base in order and stopping at the
-- first event still within retention, instead of taking min(seq) over the whole chain joined to
-- its events. The old form read every position and event of every organization at each node's
-- start: over a chain of a million events it ran past the runtime role's 15 s statement timeout,
-- so retention failed ("will retry tomorrow") every day for exactly the organizations that
-- needed it, and kept a core busy each time. The walk reads the positions about to be purged,
-- plus one, and at most 100,000 of them: a longer backlog is cut in steps of that size (the
-- caller asks again until nothing is due), each step well inside the timeout.
CREATE OR REPLACE FUNCTION palisade.retention_due(p_now timestamptz, p_max integer)
    RETURNS TABLE (tenant_id uuid, seq bigint, hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT h.tenant_id, cut.seq, c.hash
      FROM palisade.audit_chain_heads h
      JOIN palisade.orgs o ON o.tenant_id = h.tenant_id AND NOT o.legal_hold
      CROSS JOIN LATERAL (
          -- Positions below the first one whose event is within retention all hold older events.
          SELECT coalesce((SELECT ch.seq - 1 FROM palisade.audit_chain ch JOIN palisade.audit_events e ON e.id = ch.event_id
                            WHERE ch.tenant_id = h.tenant_id AND ch.seq > h.base_seq AND ch.seq <= h.base_seq + 100000
                              AND e.occurred_at >= p_now - make_interval(days => o.audit_retention_days)
                            ORDER BY ch.seq LIMIT 1),
                          least(h.seq, h.base_seq + 100000)) AS seq) cut
      JOIN palisade.audit_chain c ON c.tenant_id = h.tenant_id AND c.seq = cut.seq
     WHERE cut.seq > h.base_seq
     ORDER BY h.tenant_id LIMIT p_max
$$;
