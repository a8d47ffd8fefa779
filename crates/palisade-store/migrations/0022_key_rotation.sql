-- Key status and rotation without a session (E4): the rotation job and `palisade keys` act for
-- the instance. Each function below does one checked thing as the key keeper's own role and
-- writes its own audit event. Those that touch an organization's records or secrets enter it
-- only for their own duration (`enter_for_keys` / `leave_for_keys` put the caller's settings
-- back before returning), so the runtime role gains no way to read or change an organization's data beyond
-- ciphertexts it cannot open without the key provider, and the records' policies stay as they
-- are (T3: no permissive policy widens them).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palisade_keykeeper') THEN
        CREATE ROLE palisade_keykeeper NOLOGIN;
    END IF;
    IF NOT pg_has_role(current_user, 'palisade_keykeeper', 'MEMBER') THEN
        EXECUTE format('GRANT palisade_keykeeper TO %I', current_user);
    END IF;
END
$$;
GRANT USAGE, CREATE ON SCHEMA palisade TO palisade_keykeeper;
CREATE POLICY keykeeper ON palisade.org_data_keys TO palisade_keykeeper USING (true) WITH CHECK (true);
CREATE POLICY keykeeper_reads ON palisade.orgs FOR SELECT TO palisade_keykeeper USING (true);
CREATE POLICY keykeeper_notes ON palisade.audit_events FOR INSERT TO palisade_keykeeper WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON palisade.org_data_keys TO palisade_keykeeper;
GRANT SELECT, UPDATE (sealed) ON palisade.records TO palisade_keykeeper;
GRANT SELECT, UPDATE (sealed) ON palisade.secrets TO palisade_keykeeper;
GRANT SELECT ON palisade.orgs TO palisade_keykeeper;
GRANT INSERT ON palisade.audit_events TO palisade_keykeeper;

-- Enters organization p_org for a key keeper function (all its records in scope) and returns
-- the caller's settings, which leave_for_keys puts back.
CREATE FUNCTION palisade.enter_for_keys(p_org uuid) RETURNS text[]
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_saved text[] := ARRAY[coalesce(current_setting('app.tenant_id', true), ''),
                            coalesce(current_setting('app.record_scope', true), '')];
BEGIN
    PERFORM set_config('app.tenant_id', p_org::text, true);
    PERFORM set_config('app.record_scope', 'all', true);
    RETURN v_saved;
END
$$;
CREATE FUNCTION palisade.leave_for_keys(p_saved text[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_saved[1], true);
    PERFORM set_config('app.record_scope', p_saved[2], true);
END
$$;
GRANT EXECUTE ON FUNCTION palisade.enter_for_keys(uuid), palisade.leave_for_keys(text[]) TO palisade_keykeeper;

-- The data key an envelope names (bytes 2–17 of `[0xE1][key id][nonce][ciphertext]`); NULL for
-- anything that is not an envelope (and for NULL). Not STRICT, so the planner inlines it: a call
-- per row would cost the rotation two thirds of its speed.
CREATE FUNCTION palisade.envelope_key(p_sealed bytea) RETURNS uuid
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN length(p_sealed) >= 17 AND get_byte(p_sealed, 0) = 225
                      THEN encode(substring(p_sealed FROM 2 FOR 16), 'hex')::uuid END $$;
GRANT EXECUTE ON FUNCTION palisade.envelope_key(bytea) TO palisade_keykeeper;
CREATE INDEX records_envelope_key_idx ON palisade.records (tenant_id, palisade.envelope_key(sealed)) WHERE sealed IS NOT NULL;

-- Organizations with key work to do: a rotation still re-encrypting (a retired key), or an
-- active key older than the rotation period.
CREATE FUNCTION palisade.key_work_due(p_now timestamptz, p_period interval, p_max integer)
    RETURNS TABLE (tenant_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT k.tenant_id FROM palisade.org_data_keys k
     GROUP BY k.tenant_id
    HAVING bool_or(k.retired_at IS NOT NULL) OR max(k.created_at) FILTER (WHERE k.retired_at IS NULL) <= p_now - p_period
     ORDER BY k.tenant_id LIMIT p_max
$$;
ALTER FUNCTION palisade.key_work_due(timestamptz, interval, integer) OWNER TO palisade_keykeeper;

-- Every organization that has data keys (key status, KEK rotation).
CREATE FUNCTION palisade.orgs_with_keys() RETURNS TABLE (tenant_id uuid, name text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
    SELECT o.tenant_id, o.name FROM palisade.orgs o
     WHERE EXISTS (SELECT 1 FROM palisade.org_data_keys k WHERE k.tenant_id = o.tenant_id)
     ORDER BY o.name, o.tenant_id
$$;
ALTER FUNCTION palisade.orgs_with_keys() OWNER TO palisade_keykeeper;

-- One organization's data keys (wrapped: useless without the key provider) and, with p_count,
-- how many stored values each still encrypts (0 without: the rotation job's batches skip it).
CREATE FUNCTION palisade.org_key_rows(p_org uuid, p_count boolean DEFAULT true)
    RETURNS TABLE (id uuid, wrapping_key text, wrapped bytea, created_at timestamptz, rewrapped_at timestamptz,
                   retired_at timestamptz, values_left bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_saved text[];
BEGIN
    v_saved := palisade.enter_for_keys(p_org);
    RETURN QUERY
    SELECT k.id, k.wrapping_key, k.wrapped, k.created_at, k.rewrapped_at, k.retired_at,
           CASE WHEN p_count THEN
               (SELECT count(*) FROM palisade.records r
                 WHERE r.tenant_id = p_org AND r.sealed IS NOT NULL AND palisade.envelope_key(r.sealed) = k.id)
             + (SELECT count(*) FROM palisade.secrets s WHERE s.tenant_id = p_org AND palisade.envelope_key(s.sealed) = k.id)
           ELSE 0 END
      FROM palisade.org_data_keys k
     WHERE k.tenant_id = p_org
     ORDER BY k.retired_at IS NULL DESC, k.created_at DESC, k.id;
    PERFORM palisade.leave_for_keys(v_saved);
END
$$;
ALTER FUNCTION palisade.org_key_rows(uuid, boolean) OWNER TO palisade_keykeeper;

-- Starts a data-key rotation: the new key (already wrapped by the provider) becomes active, the
-- old one is retired and keeps decrypting until the job has re-encrypted everything under it.
-- Refuses (PAKR1) while an earlier rotation is still re-encrypting.
CREATE FUNCTION palisade.start_key_rotation(p_org uuid, p_id uuid, p_wrapping_key text, p_wrapped bytea,
                                            p_now timestamptz, p_event uuid, p_reason text) RETURNS uuid
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_old uuid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM palisade.orgs o WHERE o.tenant_id = p_org) THEN
        RAISE EXCEPTION 'organization not found' USING ERRCODE = 'PA404';
    END IF;
    PERFORM 1 FROM palisade.org_data_keys k WHERE k.tenant_id = p_org FOR UPDATE;
    IF EXISTS (SELECT 1 FROM palisade.org_data_keys k WHERE k.tenant_id = p_org AND k.retired_at IS NOT NULL) THEN
        RAISE EXCEPTION 'a rotation is still re-encrypting' USING ERRCODE = 'PAKR1';
    END IF;
    UPDATE palisade.org_data_keys k SET retired_at = p_now WHERE k.tenant_id = p_org AND k.retired_at IS NULL
        RETURNING k.id INTO v_old;
    INSERT INTO palisade.org_data_keys (tenant_id, id, wrapping_key, wrapped, created_at)
        VALUES (p_org, p_id, p_wrapping_key, p_wrapped, p_now);
    INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, target_kind, outcome, details)
        VALUES (p_event, p_org, p_now, 'system', 'keys.rotation_started', 'org', 'success',
                jsonb_build_object('from_key', v_old, 'to_key', p_id, 'reason', p_reason));
    RETURN v_old;
END
$$;
ALTER FUNCTION palisade.start_key_rotation(uuid, uuid, text, bytea, timestamptz, uuid, text) OWNER TO palisade_keykeeper;

-- Up to p_limit stored values still under retired key p_key: ('record' | 'secret', id, sealed).
CREATE FUNCTION palisade.rotation_batch(p_org uuid, p_key uuid, p_limit integer)
    RETURNS TABLE (kind text, id uuid, sealed bytea)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_saved text[];
BEGIN
    v_saved := palisade.enter_for_keys(p_org);
    IF NOT EXISTS (SELECT 1 FROM palisade.org_data_keys k WHERE k.tenant_id = p_org AND k.id = p_key AND k.retired_at IS NOT NULL) THEN
        RAISE EXCEPTION 'not a retired key of this organization' USING ERRCODE = 'PA404';
    END IF;
    RETURN QUERY
    SELECT v.kind, v.id, v.sealed FROM (
        (SELECT 'secret'::text AS kind, s.id, s.sealed FROM palisade.secrets s
          WHERE s.tenant_id = p_org AND palisade.envelope_key(s.sealed) = p_key LIMIT p_limit)
        UNION ALL
        (SELECT 'record'::text, r.id, r.sealed FROM palisade.records r
          WHERE r.tenant_id = p_org AND r.sealed IS NOT NULL AND palisade.envelope_key(r.sealed) = p_key LIMIT p_limit)
    ) v LIMIT p_limit;
    PERFORM palisade.leave_for_keys(v_saved);
END
$$;
ALTER FUNCTION palisade.rotation_batch(uuid, uuid, integer) OWNER TO palisade_keykeeper;

-- Replaces re-encrypted values, each only if it still holds exactly what was read (a value a
-- user changed meanwhile is already under the active key and is left alone), only from a
-- retired key of this organization to its active key. Versions and times are untouched: the
-- data did not change. Returns how many were replaced.
CREATE FUNCTION palisade.rotation_apply(p_org uuid, p_kinds text[], p_ids uuid[], p_old bytea[], p_new bytea[])
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_active uuid;
    v_records integer;
    v_secrets integer;
    v_saved text[];
BEGIN
    v_saved := palisade.enter_for_keys(p_org);
    SELECT k.id INTO v_active FROM palisade.org_data_keys k WHERE k.tenant_id = p_org AND k.retired_at IS NULL;
    IF v_active IS NULL OR EXISTS (
        SELECT 1 FROM unnest(p_old, p_new) AS v(old, new)
         WHERE palisade.envelope_key(v.new) IS DISTINCT FROM v_active
            OR NOT EXISTS (SELECT 1 FROM palisade.org_data_keys k WHERE k.tenant_id = p_org
                              AND k.id = palisade.envelope_key(v.old) AND k.retired_at IS NOT NULL)) THEN
        RAISE EXCEPTION 'a value is not moving from a retired key to the active key' USING ERRCODE = 'PA403';
    END IF;
    UPDATE palisade.records r SET sealed = v.new
      FROM unnest(p_kinds, p_ids, p_old, p_new) AS v(kind, id, old, new)
     WHERE v.kind = 'record' AND r.tenant_id = p_org AND r.id = v.id AND r.sealed = v.old;
    GET DIAGNOSTICS v_records = ROW_COUNT;
    UPDATE palisade.secrets s SET sealed = v.new
      FROM unnest(p_kinds, p_ids, p_old, p_new) AS v(kind, id, old, new)
     WHERE v.kind = 'secret' AND s.tenant_id = p_org AND s.id = v.id AND s.sealed = v.old;
    GET DIAGNOSTICS v_secrets = ROW_COUNT;
    PERFORM palisade.leave_for_keys(v_saved);
    RETURN v_records + v_secrets;
END
$$;
ALTER FUNCTION palisade.rotation_apply(uuid, text[], uuid[], bytea[], bytea[]) OWNER TO palisade_keykeeper;

-- Ends a rotation: deletes retired key p_key once nothing is stored under it and it was retired
-- at least p_min_age ago (longer than any node keeps an unwrapped key: a node that has not yet
-- noticed the rotation may still seal under it). Returns false while either does not hold (the
-- job goes on). The key row is locked first; writers hold it KEY SHARE (records_sealed_key_guard),
-- so a write in flight under this key is committed, and counted, before the check.
CREATE FUNCTION palisade.finish_key_rotation(p_org uuid, p_key uuid, p_now timestamptz, p_event uuid, p_min_age interval)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_saved text[];
BEGIN
    v_saved := palisade.enter_for_keys(p_org);
    PERFORM 1 FROM palisade.org_data_keys k WHERE k.tenant_id = p_org AND k.id = p_key AND k.retired_at IS NOT NULL FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM palisade.leave_for_keys(v_saved);
        RETURN true;
    END IF;
    IF EXISTS (SELECT 1 FROM palisade.org_data_keys k WHERE k.tenant_id = p_org AND k.id = p_key AND k.retired_at > p_now - p_min_age) THEN
        PERFORM palisade.leave_for_keys(v_saved);
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM palisade.records r WHERE r.tenant_id = p_org AND r.sealed IS NOT NULL AND palisade.envelope_key(r.sealed) = p_key)
       OR EXISTS (SELECT 1 FROM palisade.secrets s WHERE s.tenant_id = p_org AND palisade.envelope_key(s.sealed) = p_key) THEN
        PERFORM palisade.leave_for_keys(v_saved);
        RETURN false;
    END IF;
    DELETE FROM palisade.org_data_keys k WHERE k.tenant_id = p_org AND k.id = p_key;
    INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, target_kind, outcome, details)
        VALUES (p_event, p_org, p_now, 'system', 'keys.rotation_completed', 'org', 'success',
                jsonb_build_object('retired_key', p_key));
    PERFORM palisade.leave_for_keys(v_saved);
    RETURN true;
END
$$;
ALTER FUNCTION palisade.finish_key_rotation(uuid, uuid, timestamptz, uuid, interval) OWNER TO palisade_keykeeper;

-- A KEK rotation rewraps an organization's data key under its new wrapping key (only if it is
-- still wrapped by p_from: a rerun after a crash skips what is done) and notes it.
CREATE FUNCTION palisade.rewrap_org_key(p_org uuid, p_id uuid, p_from text, p_to text, p_wrapped bytea,
                                        p_now timestamptz, p_event uuid) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, palisade
    AS $$
BEGIN
    UPDATE palisade.org_data_keys k SET wrapping_key = p_to, wrapped = p_wrapped, rewrapped_at = p_now
     WHERE k.tenant_id = p_org AND k.id = p_id AND k.wrapping_key = p_from;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO palisade.audit_events (id, tenant_id, occurred_at, actor_kind, action, target_kind, outcome, details)
        VALUES (p_event, p_org, p_now, 'system', 'keys.rewrapped', 'org', 'success',
                jsonb_build_object('key', p_id, 'from_wrapping_key', p_from, 'to_wrapping_key', p_to));
    RETURN true;
END
$$;
ALTER FUNCTION palisade.rewrap_org_key(uuid, uuid, text, text, bytea, timestamptz, uuid) OWNER TO palisade_keykeeper;

-- A value is only ever written under a data key its organization still has (a node whose cache
-- has not caught up with a finished rotation gets a retryable refusal, never a value nobody can
-- decrypt). Once per statement: the key rows the new values name are locked KEY SHARE until the
-- write commits, so finish_key_rotation (which locks the row FOR UPDATE, then looks for values)
-- either waits for the write and sees it, or has deleted the key and the write is refused here.
CREATE FUNCTION palisade.sealed_key_guard() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM 1 FROM palisade.org_data_keys k
      WHERE (k.tenant_id, k.id) IN (SELECT n.tenant_id, palisade.envelope_key(n.sealed) FROM new_rows n WHERE n.sealed IS NOT NULL)
      FOR KEY SHARE;
    IF EXISTS (SELECT 1 FROM new_rows n
                WHERE n.sealed IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM palisade.org_data_keys k
                                   WHERE k.tenant_id = n.tenant_id AND k.id = palisade.envelope_key(n.sealed))) THEN
        RAISE EXCEPTION 'the data key a value was sealed under is gone; retry' USING ERRCODE = 'PAKG1';
    END IF;
    RETURN NULL;
END
$$;
GRANT EXECUTE ON FUNCTION palisade.sealed_key_guard() TO palisade_keykeeper;
CREATE TRIGGER records_sealed_key_guard_insert AFTER INSERT ON palisade.records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION palisade.sealed_key_guard();
CREATE TRIGGER records_sealed_key_guard_update AFTER UPDATE ON palisade.records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION palisade.sealed_key_guard();
CREATE TRIGGER secrets_sealed_key_guard_insert AFTER INSERT ON palisade.secrets
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION palisade.sealed_key_guard();
CREATE TRIGGER secrets_sealed_key_guard_update AFTER UPDATE ON palisade.secrets
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION palisade.sealed_key_guard();
