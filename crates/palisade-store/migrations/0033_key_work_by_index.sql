-- Which organizations' data keys need work, found through indexes instead of an aggregate over
-- every organization's keys.
--
-- The key keeper asks every 10 s on every node: an organization needs work while it has a
-- retired key (its values are being re-encrypted, or the key awaits deletion) or when its
-- active key is older than the rotation period. The old function grouped all of
-- org_data_keys to answer: 64 ms per call with 100,000 organizations holding keys and none due.
-- Each condition now reads only its own rows: retired keys through a partial index (few, and
-- only during a rotation), active keys past the period through a partial index on their age
-- (an organization has at most one active key: org_data_keys_one_active). The plan is fixed as
-- the sequencer's is (0031, 0032).
CREATE INDEX org_data_keys_retired_idx ON palisade.org_data_keys (tenant_id) WHERE retired_at IS NOT NULL;
CREATE INDEX org_data_keys_active_age_idx ON palisade.org_data_keys (created_at) WHERE retired_at IS NULL;

CREATE OR REPLACE FUNCTION palisade.key_work_due(p_now timestamptz, p_period interval, p_max integer)
    RETURNS TABLE (tenant_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    SET enable_seqscan = off
    SET enable_bitmapscan = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    AS $$
    SELECT d.tenant_id FROM (
        SELECT k.tenant_id FROM palisade.org_data_keys k WHERE k.retired_at IS NOT NULL
        UNION
        SELECT k.tenant_id FROM palisade.org_data_keys k WHERE k.retired_at IS NULL AND k.created_at <= p_now - p_period
    ) d
    ORDER BY d.tenant_id LIMIT p_max
$$;
ALTER FUNCTION palisade.key_work_due(timestamptz, interval, integer) OWNER TO palisade_keykeeper;
