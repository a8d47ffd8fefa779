-- The instance chain: events that belong to no organization (sign-up, sign-in, failed sign-ins,
-- lockouts, refresh-token reuse, MFA and passkey changes) are hash-chained and checkpointed like
-- an organization's, and purged after the instance's audit retention.
--
-- Until now the sequencer chained only events with a tenant: the account events, the first
-- place an investigator looks after an account takeover, could be changed or deleted by anyone
-- with write access to the table without a trace, and were kept forever (IP addresses and user
-- agents included). They now form one more chain, named by the nil UUID
-- (00000000-0000-0000-0000-000000000000; `org_00000000000000000000000000` in checkpoint
-- messages): no organization has that id (organization ids are UUIDv7, and `tenants` refuses it
-- below), so no caller can enter it. The encoding is the
-- organization chains' (docs/audit.md), with the nil UUID in the organization field; the hashes
-- of organization events do not change.

-- No sequencer pass (any node, old or new code) runs while this migrates: the chain the backfill
-- below writes must not race one. The backfill walks every instance event an install has, in one
-- statement: no statement timeout for this transaction. The table changes come last, so their
-- locks (held until commit) are held for as short a time as possible.
SET LOCAL statement_timeout = 0;
SELECT pg_advisory_xact_lock(727274002);

-- The migrating role writes the backfilled chain as the sequencer's role (as 0011 arranged for
-- whoever ran it then).
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'palisade_sealer', 'MEMBER') THEN
        EXECUTE format('GRANT palisade_sealer TO %I', current_user);
    END IF;
END
$$;

-- The encoding: an event without a tenant hashes as the instance chain's (NULL would make the
-- whole hash NULL). Still inlinable: the same single SELECT, STABLE.
CREATE OR REPLACE FUNCTION palisade.audit_hash(p_seq bigint, p_prev bytea, e palisade.audit_events) RETURNS bytea
    LANGUAGE sql STABLE
    AS $$
    SELECT sha256(convert_to('palisade-audit-v1', 'UTF8') || int8send(p_seq) || p_prev
                  || uuid_send(e.id) || uuid_send(coalesce(e.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid))
                  || int8send((extract(epoch FROM e.occurred_at) * 1000000)::bigint)
                  || palisade.audit_field(e.actor_kind) || palisade.audit_field(e.actor_id::text)
                  || palisade.audit_field(e.action) || palisade.audit_field(e.target_kind)
                  || palisade.audit_field(e.target_id::text) || palisade.audit_field(host(e.ip))
                  || palisade.audit_field(e.user_agent) || palisade.audit_field(e.request_id)
                  || palisade.audit_field(e.outcome) || palisade.audit_field(e.details::text))
$$;

-- The instance events written before this migration are behind the sequencer's horizon
-- (`low_xid`): chain them here, in the order they were written, as the sequencer would have
-- (same encoding, same order, run as its role), 10,000 positions per insert. The horizon itself
-- does not move: events from it on are the sequencer's, and follow these in the chain. Nothing
-- else is re-examined, so an organization event found in no chain position before stays found.
SET LOCAL ROLE palisade_sealer;
DO $$
DECLARE
    v_chain constant uuid := '00000000-0000-0000-0000-000000000000';
    v_low xid8;
    e palisade.audit_events%ROWTYPE;
    v_seq bigint := 0;
    v_hash bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    v_first timestamptz;
    v_seqs bigint[] := '{}';
    v_events uuid[] := '{}';
    v_hashes bytea[] := '{}';
BEGIN
    SELECT s.low_xid INTO v_low FROM palisade.audit_sealer s WHERE s.id = 1 FOR UPDATE;
    FOR e IN SELECT a.* FROM palisade.audit_events a
              WHERE a.tenant_id IS NULL AND a.xid < v_low
              ORDER BY a.xid, a.id LOOP
        v_seq := v_seq + 1;
        v_hash := palisade.audit_hash(v_seq, v_hash, e);
        v_first := coalesce(v_first, e.occurred_at);
        v_seqs := array_append(v_seqs, v_seq);
        v_events := array_append(v_events, e.id);
        v_hashes := array_append(v_hashes, v_hash);
        IF cardinality(v_seqs) >= 10000 THEN
            INSERT INTO palisade.audit_chain (tenant_id, seq, event_id, hash)
            SELECT v_chain, * FROM unnest(v_seqs, v_events, v_hashes);
            v_seqs := '{}';
            v_events := '{}';
            v_hashes := '{}';
        END IF;
    END LOOP;
    INSERT INTO palisade.audit_chain (tenant_id, seq, event_id, hash)
    SELECT v_chain, * FROM unnest(v_seqs, v_events, v_hashes);
    IF v_seq > 0 THEN
        INSERT INTO palisade.audit_chain_heads (tenant_id, seq, hash, checkpointed_at)
        VALUES (v_chain, v_seq, v_hash, v_first);
    END IF;
END
$$;
RESET ROLE;

-- 0028's sequencer with events without a tenant chained under the nil UUID, and 0031's fixed
-- plan (CREATE OR REPLACE resets a function's SET options, so they are stated again).
CREATE OR REPLACE FUNCTION palisade.seal_audit_events(p_max integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    SET enable_seqscan = off
    SET enable_hashjoin = off
    SET enable_mergejoin = off
    SET enable_bitmapscan = off
    SET max_parallel_workers_per_gather = 0
    SET jit = off
    AS $$
DECLARE
    v_low xid8;
    v_xmin xid8;
    v_last xid8;
    e palisade.audit_events%ROWTYPE;
    v_chain uuid;
    v_tenant uuid;
    v_seq bigint;
    v_hash bytea;
    v_count integer := 0;
    v_tenants uuid[] := '{}';
    v_seqs bigint[] := '{}';
    v_events uuid[] := '{}';
    v_hashes bytea[] := '{}';
BEGIN
    IF NOT pg_try_advisory_xact_lock(727274002) THEN
        RETURN 0;
    END IF;
    SELECT s.low_xid INTO v_low FROM palisade.audit_sealer s WHERE s.id = 1 FOR UPDATE;
    v_xmin := pg_snapshot_xmin(pg_current_snapshot());
    FOR e IN SELECT b.* FROM (
                 SELECT a.* FROM palisade.audit_events a
                  WHERE a.xid >= v_low
                    AND NOT EXISTS (SELECT 1 FROM palisade.audit_chain c WHERE c.event_id = a.id)
                  ORDER BY a.xid LIMIT greatest(p_max, 1)) b
              ORDER BY coalesce(b.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), b.xid, b.id LOOP
        v_chain := coalesce(e.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid);
        IF v_tenant IS DISTINCT FROM v_chain THEN
            IF v_tenant IS NOT NULL THEN
                UPDATE palisade.audit_chain_heads h SET seq = v_seq, hash = v_hash WHERE h.tenant_id = v_tenant;
            END IF;
            v_tenant := v_chain;
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
        v_tenants := array_append(v_tenants, v_tenant);
        v_seqs := array_append(v_seqs, v_seq);
        v_events := array_append(v_events, e.id);
        v_hashes := array_append(v_hashes, v_hash);
        v_count := v_count + 1;
        v_last := greatest(v_last, e.xid);
    END LOOP;
    IF v_tenant IS NOT NULL THEN
        UPDATE palisade.audit_chain_heads h SET seq = v_seq, hash = v_hash WHERE h.tenant_id = v_tenant;
        INSERT INTO palisade.audit_chain (tenant_id, seq, event_id, hash)
        SELECT * FROM unnest(v_tenants, v_seqs, v_events, v_hashes);
    END IF;
    -- A full batch may have left events behind: do not pass the last transaction it reached.
    UPDATE palisade.audit_sealer
       SET low_xid = greatest(v_low, CASE WHEN v_count >= p_max THEN least(v_xmin, v_last) ELSE v_xmin END)
     WHERE id = 1;
    RETURN v_count;
END
$$;
ALTER FUNCTION palisade.seal_audit_events(integer) OWNER TO palisade_sealer;

-- The instance's audit retention, set by the operator (`instance_audit_retention_days`, written
-- when configured by `palisade migrate` and by an embedded server's start, both over the admin
-- connection). Only the migrating role may change it: the purge below reads it here and takes no
-- retention from its caller, so a server (or SQL injected into one) cannot shorten how long
-- sign-ins are kept.
CREATE TABLE palisade.instance_audit (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    retention_days integer NOT NULL DEFAULT 730 CHECK (retention_days BETWEEN 365 AND 36500)
);
INSERT INTO palisade.instance_audit DEFAULT VALUES;
GRANT SELECT ON palisade.instance_audit TO palisade_sealer;

-- Retention of the instance chain: the same walk and the same signed cut as an organization's
-- (0012, 0026), with the instance's retention instead of an organization's setting. There is no
-- legal hold for the instance chain: an operator who must keep it raises the retention.
CREATE FUNCTION palisade.instance_retention_due(p_now timestamptz)
    RETURNS TABLE (seq bigint, hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT cut.seq, c.hash
      FROM palisade.audit_chain_heads h
      CROSS JOIN palisade.instance_audit ia
      CROSS JOIN LATERAL (
          SELECT coalesce((SELECT ch.seq - 1 FROM palisade.audit_chain ch JOIN palisade.audit_events e ON e.id = ch.event_id
                            WHERE ch.tenant_id = h.tenant_id AND ch.seq > h.base_seq AND ch.seq <= h.base_seq + 100000
                              AND e.occurred_at >= p_now - make_interval(days => ia.retention_days)
                            ORDER BY ch.seq LIMIT 1),
                          least(h.seq, h.base_seq + 100000)) AS seq) cut
      JOIN palisade.audit_chain c ON c.tenant_id = h.tenant_id AND c.seq = cut.seq
     WHERE h.tenant_id = '00000000-0000-0000-0000-000000000000'::uuid AND cut.seq > h.base_seq
$$;
ALTER FUNCTION palisade.instance_retention_due(timestamptz) OWNER TO palisade_sealer;

-- Cuts the instance chain at p_seq (as purge_audit does an organization's): refuses a time more
-- than 5 minutes ahead of the database clock, an event up to p_seq still within the instance's
-- retention, or a position whose hash is not p_hash.
CREATE FUNCTION palisade.purge_instance_audit(p_seq bigint, p_hash bytea, p_now timestamptz,
                                              p_key_id text, p_signature bytea) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_chain constant uuid := '00000000-0000-0000-0000-000000000000';
    v_days integer;
    v_base bigint;
    v_deleted bigint;
BEGIN
    IF p_now > now() + interval '5 minutes' THEN
        RAISE EXCEPTION 'the purge time is ahead of the database clock' USING ERRCODE = 'PA403';
    END IF;
    SELECT ia.retention_days INTO STRICT v_days FROM palisade.instance_audit ia;
    IF NOT EXISTS (SELECT 1 FROM palisade.audit_chain c WHERE c.tenant_id = v_chain AND c.seq = p_seq AND c.hash = p_hash) THEN
        RAISE EXCEPTION 'no such chain position' USING ERRCODE = 'PA404';
    END IF;
    SELECT h.base_seq INTO v_base FROM palisade.audit_chain_heads h WHERE h.tenant_id = v_chain FOR UPDATE;
    IF EXISTS (SELECT 1 FROM palisade.audit_chain c JOIN palisade.audit_events e ON e.id = c.event_id
                WHERE c.tenant_id = v_chain AND c.seq > v_base AND c.seq <= p_seq
                  AND e.occurred_at >= p_now - make_interval(days => v_days)) THEN
        RAISE EXCEPTION 'an event up to that position is still within retention' USING ERRCODE = 'PA403';
    END IF;
    INSERT INTO palisade.audit_checkpoints (tenant_id, kind, seq, hash, signed_at, key_id, signature)
    VALUES (v_chain, 'truncation', p_seq, p_hash, p_now, p_key_id, p_signature);
    DELETE FROM palisade.audit_events e USING palisade.audit_chain c
     WHERE c.tenant_id = v_chain AND c.seq <= p_seq AND e.id = c.event_id AND e.tenant_id IS NULL;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    DELETE FROM palisade.audit_chain c WHERE c.tenant_id = v_chain AND c.seq <= p_seq;
    DELETE FROM palisade.audit_checkpoints k WHERE k.tenant_id = v_chain AND k.seq <= p_seq AND k.kind = 'head';
    DELETE FROM palisade.audit_checkpoints k WHERE k.tenant_id = v_chain AND k.seq < p_seq AND k.kind = 'truncation';
    UPDATE palisade.audit_chain_heads SET base_seq = p_seq, base_hash = p_hash WHERE tenant_id = v_chain;
    INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, outcome, details)
    VALUES (gen_random_uuid(), NULL, p_now, 'system', 'audit.purged', 'success',
            jsonb_build_object('through_seq', p_seq, 'events', v_deleted, 'retention_days', v_days));
    RETURN v_deleted;
END
$$;
ALTER FUNCTION palisade.purge_instance_audit(bigint, bytea, timestamptz, text, bytea) OWNER TO palisade_sealer;

-- The sequencer's candidates are now every event from the horizon on, with or without a tenant.
CREATE INDEX audit_events_xid_idx ON palisade.audit_events (xid);
DROP INDEX palisade.audit_events_unsealed_idx;

-- No organization may ever be the instance chain: enter_new_tenant takes the id the server
-- sends, so the database refuses the nil UUID itself.
ALTER TABLE palisade.tenants ADD CONSTRAINT tenants_id_is_not_the_instance_chain
    CHECK (id <> '00000000-0000-0000-0000-000000000000'::uuid);
