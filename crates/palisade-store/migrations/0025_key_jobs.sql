-- The key keeper's jobs get a login of their own (#7). Until now the runtime role could execute
-- every key keeper function: SQL injected into a request's connection could start rotations,
-- apply re-encrypted values, rewrap keys or shred an organization that is scheduled for
-- deletion. From here on those functions are executable only by members of palisade_keyjobs:
-- the `<runtime role>_keys` login that `palisade migrate` creates and that only the rotation and
-- shredding job and `palisade keys` use (a pool of two connections of their own). The runtime
-- role keeps what requests need: envelope_key and sealed_key_guard (sealed writes), and
-- org_key_rows, now only for the organization its verified caller settings name.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'palisade_keyjobs') THEN
        CREATE ROLE palisade_keyjobs NOLOGIN;
    END IF;
    -- The migrating role grants the membership to the `_keys` login (migrate.rs).
    IF NOT pg_has_role(current_user, 'palisade_keyjobs', 'MEMBER') THEN
        EXECUTE format('GRANT palisade_keyjobs TO %I WITH ADMIN OPTION', current_user);
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION
    palisade.key_work_due(timestamptz, interval, integer),
    palisade.orgs_with_keys(),
    palisade.org_key_rows(uuid, boolean),
    palisade.start_key_rotation(uuid, uuid, text, bytea, timestamptz, uuid, text),
    palisade.rotation_batch(uuid, uuid, integer),
    palisade.rotation_apply(uuid, text[], uuid[], bytea[], bytea[]),
    palisade.finish_key_rotation(uuid, uuid, timestamptz, uuid, interval),
    palisade.rewrap_org_key(uuid, uuid, text, text, bytea, timestamptz, uuid),
    palisade.orgs_due_for_shredding(timestamptz, integer),
    palisade.shred_org(uuid, timestamptz, uuid),
    palisade.begin_shredding(uuid, timestamptz)
    TO palisade_keyjobs;

-- One organization's data keys, as before, but for a caller outside palisade_keyjobs only the
-- organization its verified settings entered (GET …/keys runs in that organization's
-- transaction, after the permission check): any other is PA404, as if it did not exist.
CREATE OR REPLACE FUNCTION palisade.org_key_rows(p_org uuid, p_count boolean DEFAULT true)
    RETURNS TABLE (id uuid, wrapping_key text, wrapped bytea, created_at timestamptz, rewrapped_at timestamptz,
                   retired_at timestamptz, values_left bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, palisade
    AS $$
DECLARE
    v_saved text[];
BEGIN
    IF NOT pg_has_role(session_user, 'palisade_keyjobs', 'MEMBER')
       AND coalesce(palisade.setting('app.tenant_id', true), '') IS DISTINCT FROM p_org::text THEN
        RAISE EXCEPTION 'no such organization' USING ERRCODE = 'PA404';
    END IF;
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
