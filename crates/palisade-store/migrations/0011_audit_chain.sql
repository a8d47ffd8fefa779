-- A verifiable audit trail: every organization's events are hash-chained by a sequencer shortly
-- after commit (writers never wait on a chain head), and signed checkpoints anchor the chain.
-- docs/audit.md documents the encoding; palisade-store's `audit_chain` module recomputes it.

-- Which transaction wrote each event, so the sequencer need only look at recent transactions
-- (see seal_audit_events) and an event committed late is never skipped.
ALTER TABLE palisade.audit_events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX audit_events_unsealed_idx ON palisade.audit_events (xid) WHERE tenant_id IS NOT NULL;

-- The sequencer's own role: it may read every organization's events (and nothing else may
-- become it). It owns only the sealing function, which runs as it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palisade_sealer') THEN
        CREATE ROLE palisade_sealer NOLOGIN;
    END IF;
    IF NOT pg_has_role(current_user, 'palisade_sealer', 'MEMBER') THEN
        EXECUTE format('GRANT palisade_sealer TO %I', current_user);
    END IF;
END
$$;
GRANT USAGE, CREATE ON SCHEMA palisade TO palisade_sealer;

-- One row per sealed event: its place in its organization's chain and the chain hash there.
CREATE TABLE palisade.audit_chain (
    tenant_id uuid NOT NULL,
    seq       bigint NOT NULL CHECK (seq > 0),
    event_id  uuid NOT NULL UNIQUE,
    hash      bytea NOT NULL CHECK (length(hash) = 32),
    sealed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq)
);

-- Each organization's chain head, and when it was last checkpointed. `base_seq`/`base_hash`
-- are where the kept chain starts (0 and 32 zero bytes, until retention truncates it).
CREATE TABLE palisade.audit_chain_heads (
    tenant_id        uuid PRIMARY KEY,
    seq              bigint NOT NULL,
    hash             bytea NOT NULL CHECK (length(hash) = 32),
    base_seq         bigint NOT NULL DEFAULT 0,
    base_hash        bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
    checkpointed_seq bigint NOT NULL DEFAULT 0,
    checkpointed_at  timestamptz NOT NULL
);
CREATE INDEX audit_chain_heads_due_idx ON palisade.audit_chain_heads (checkpointed_at) WHERE seq > checkpointed_seq;

-- Signed checkpoints (Ed25519 over the documented message), kept for customers to download.
CREATE TABLE palisade.audit_checkpoints (
    tenant_id uuid NOT NULL,
    seq       bigint NOT NULL,
    hash      bytea NOT NULL CHECK (length(hash) = 32),
    signed_at timestamptz NOT NULL,
    key_id    text NOT NULL,
    signature bytea NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (tenant_id, seq)
);

-- The sequencer's progress: every event of a transaction with xid < low_xid is sealed.
CREATE TABLE palisade.audit_sealer (
    id      integer PRIMARY KEY CHECK (id = 1),
    low_xid xid8 NOT NULL
);
INSERT INTO palisade.audit_sealer (id, low_xid) VALUES (1, '0');

-- Signing keys of the instance (audit checkpoints now; access tokens later). The private key is
-- sealed with the instance key, which never enters the database.
CREATE TABLE palisade.signing_keys (
    key_id         text PRIMARY KEY,
    purpose        text NOT NULL CHECK (purpose IN ('audit', 'token')),
    algorithm      text NOT NULL CHECK (algorithm = 'Ed25519'),
    public_key     bytea NOT NULL CHECK (length(public_key) = 32),
    sealed_private bytea NOT NULL,
    created_at     timestamptz NOT NULL,
    retired_at     timestamptz
);

ALTER TABLE palisade.audit_chain ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.audit_chain FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.audit_chain
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY sealer ON palisade.audit_chain TO palisade_sealer USING (true) WITH CHECK (true);
ALTER TABLE palisade.audit_chain_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.audit_chain_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.audit_chain_heads
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY sealer ON palisade.audit_chain_heads TO palisade_sealer USING (true) WITH CHECK (true);
ALTER TABLE palisade.audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE palisade.audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON palisade.audit_checkpoints
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY sealer ON palisade.audit_checkpoints TO palisade_sealer USING (true) WITH CHECK (true);
CREATE POLICY sealer_reads ON palisade.audit_events FOR SELECT TO palisade_sealer USING (true);

GRANT SELECT ON palisade.audit_events TO palisade_sealer;
GRANT SELECT, INSERT ON palisade.audit_chain TO palisade_sealer;
GRANT SELECT, INSERT, UPDATE ON palisade.audit_chain_heads TO palisade_sealer;
GRANT SELECT, INSERT ON palisade.audit_checkpoints TO palisade_sealer;
GRANT SELECT, UPDATE ON palisade.audit_sealer TO palisade_sealer;

-- One field of the encoding: 0x00 for NULL, else 0x01, the UTF-8 length (4 bytes, big endian)
-- and the UTF-8 bytes.
CREATE FUNCTION palisade.audit_field(p text) RETURNS bytea
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN p IS NULL THEN '\x00'::bytea
                      ELSE '\x01'::bytea || int4send(octet_length(convert_to(p, 'UTF8'))) || convert_to(p, 'UTF8') END $$;

-- The chain hash of event e at position p_seq after p_prev (docs/audit.md, "Encoding").
CREATE FUNCTION palisade.audit_hash(p_seq bigint, p_prev bytea, e palisade.audit_events) RETURNS bytea
    LANGUAGE sql STABLE
    AS $$
    SELECT sha256(convert_to('palisade-audit-v1', 'UTF8') || int8send(p_seq) || p_prev
                  || uuid_send(e.id) || uuid_send(e.tenant_id)
                  || int8send((extract(epoch FROM e.occurred_at) * 1000000)::bigint)
                  || palisade.audit_field(e.actor_kind) || palisade.audit_field(e.actor_id::text)
                  || palisade.audit_field(e.action) || palisade.audit_field(e.target_kind)
                  || palisade.audit_field(e.target_id::text) || palisade.audit_field(host(e.ip))
                  || palisade.audit_field(e.user_agent) || palisade.audit_field(e.request_id)
                  || palisade.audit_field(e.outcome) || palisade.audit_field(e.details::text))
$$;

-- The sequencer: appends committed, not yet chained events to their organizations' chains, at
-- most p_max per call. It looks only at transactions at or after low_xid: every transaction
-- below it had finished when an earlier run passed it, so its events are already chained. An
-- event of a transaction still open now is invisible, and is picked up by a later run (its xid
-- is at or above the new low_xid, which never passes a running transaction). Concurrent callers
-- (several nodes) take turns; a caller that finds the sequencer busy returns 0 at once.
CREATE FUNCTION palisade.seal_audit_events(p_max integer) RETURNS integer
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
                  ORDER BY a.xid, a.id LIMIT greatest(p_max, 1)) b
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
ALTER FUNCTION palisade.seal_audit_events(integer) OWNER TO palisade_sealer;

-- Chain heads that need a signed checkpoint: p_events new events, or any new event and the
-- last checkpoint older than p_every (by the caller's clock).
CREATE FUNCTION palisade.due_checkpoints(p_now timestamptz, p_events bigint, p_every interval, p_max integer)
    RETURNS TABLE (tenant_id uuid, seq bigint, hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT h.tenant_id, h.seq, h.hash FROM palisade.audit_chain_heads h
     WHERE h.seq > h.checkpointed_seq
       AND (h.seq - h.checkpointed_seq >= p_events OR h.checkpointed_at <= p_now - p_every)
     ORDER BY h.checkpointed_at LIMIT p_max
$$;
ALTER FUNCTION palisade.due_checkpoints(timestamptz, bigint, interval, integer) OWNER TO palisade_sealer;

-- Stores a signed checkpoint. It must name a real position of the chain with its hash; the
-- signature is checked by whoever verifies (the server, the CLI, the customer).
CREATE FUNCTION palisade.record_checkpoint(p_tenant uuid, p_seq bigint, p_hash bytea, p_signed_at timestamptz,
                                           p_key_id text, p_signature bytea) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM palisade.audit_chain c
                    WHERE c.tenant_id = p_tenant AND c.seq = p_seq AND c.hash = p_hash) THEN
        RAISE EXCEPTION 'no such chain position' USING ERRCODE = 'PA404';
    END IF;
    INSERT INTO palisade.audit_checkpoints (tenant_id, seq, hash, signed_at, key_id, signature)
    VALUES (p_tenant, p_seq, p_hash, p_signed_at, p_key_id, p_signature)
    ON CONFLICT DO NOTHING;
    UPDATE palisade.audit_chain_heads h SET checkpointed_seq = greatest(h.checkpointed_seq, p_seq),
                                            checkpointed_at = p_signed_at
     WHERE h.tenant_id = p_tenant AND h.checkpointed_seq < p_seq;
END
$$;
ALTER FUNCTION palisade.record_checkpoint(uuid, bigint, bytea, timestamptz, text, bytea) OWNER TO palisade_sealer;
